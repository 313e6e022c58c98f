"""Convolutional-stem patch tokenizer: ViT patches with a small conv stem inside their embedding.

Notation: B batch, T tokens, C channels, P patch size, h halo, K = P + 2h window side,
F = C * K * K feature width, S stem width (conv channels), D model dim.

A plain ViT embeds each patch with one linear map. Early convolutions make ViTs train more
stably and need less data (Xiao et al. 2021, https://arxiv.org/abs/2106.14881; the hybrid ViT of
Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929 §3.1; Compact Convolutional
Transformers, Hassani et al. 2021, https://arxiv.org/abs/2104.05704). Tokenizers are
parameter-free, so the stem lives in ``embedding(dim)``: the tokenizer only changes what a token
carries — each P x P patch plus a halo of h = 2 context pixels on every side — and the embedding
runs ``conv3x3 - GELU - conv3x3 - GELU`` without padding on each K x K window, then projects the
resulting S x P x P map to D.

Why a halo of exactly 2: each unpadded 3x3 conv consumes one pixel per side, so two of them turn
a (P+4)-wide window into exactly P x P outputs, each of which saw the same 5 x 5 neighbourhood it
would see if the stem ran over the whole image (zero-padded by 2 after normalization) — the
equality is tested. Patches are thus embedded independently (still one batched conv, and the model
stays resolution-free), yet edges across patch borders are seen. Cost per token: about
``9*S*(C*(P+2)**2 + S*P*P) + S*P*P*D`` multiply-adds, versus ``C*P*P*D`` for the plain projection; at the
default S = 16 with C = 3, P = 16, D = 768 that is 3.9 M vs 0.6 M, still small beside one
Transformer block (about 7 M per token at D = 768). No batch norm: padded tokens in a batch must
not move statistics of real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from modal_tf.core.emulation import Conv2d, Linear
from modal_tf.tokenizers.patch import PatchTokenizer
from modal_tf.tokenizers.registry import register_tokenizer


class ConvStemEmbedding(nn.Module):
    """``(B, T, C*K*K)`` halo windows to ``(B, T, D)``: two unpadded 3x3 convs with GELU, then a linear map.

    Args:
        channels: Image channels C.
        patch_size: Patch side P (the stem's output side).
        halo: Context pixels h per side; must equal the stem's receptive-field radius (2).
        width: Stem width S.
        dim: Model dim D.
    """

    def __init__(self, channels: int, patch_size: int, halo: int, width: int, dim: int) -> None:
        super().__init__()
        if halo != 2:
            raise ValueError(f"the two 3x3 convs consume exactly 2 pixels per side, so halo must be 2, got {halo}")
        self.channels = channels
        self.window = patch_size + 2 * halo
        self.stem = nn.Sequential(
            Conv2d(channels, width, kernel_size=3),
            nn.GELU(),
            Conv2d(width, width, kernel_size=3),
            nn.GELU(),  # without it the second conv and the projection would collapse into one linear map
        )
        self.project = Linear(width * patch_size * patch_size, dim)

    def forward(self, values: Tensor) -> Tensor:
        """Embed ``(B, T, F)`` windows as ``(B, T, D)``."""
        features = self.channels * self.window**2
        if values.dim() != 3 or values.shape[-1] != features:
            raise ValueError(
                f"conv stem expects (B, T, {features}) windows (C={self.channels}, K={self.window}), "
                f"got {tuple(values.shape)}"
            )
        batch, tokens, _ = values.shape
        x = values.reshape(batch * tokens, self.channels, self.window, self.window)  # (B*T, C, K, K)
        x = self.stem(x)  # (B*T, S, P, P)
        return self.project(x.flatten(1)).reshape(batch, tokens, -1)  # (B*T, S*P*P) -> (B, T, D)


@register_tokenizer("conv_patch")
class ConvPatchTokenizer(PatchTokenizer):
    """ViT patches with a 2-pixel halo, embedded by a small conv stem (early-conv / hybrid ViT).

    Same inputs, validation, normalization, ``fit`` and ``(row, col)`` coordinates as ``patch``;
    values are ``(T, C*(P+4)**2)`` windows (feature ``c*K*K + y*K + x``) instead of ``(T, C*P*P)``.

    Args:
        patch_size: Side P of each patch, in pixels.
        channels: Channels C every image must have.
        mean: Per-channel mean (with ``std``), or None to ``fit`` it.
        std: Per-channel standard deviation, > 0.
        uneven: ``"reject"`` or ``"pad"`` sizes that are not multiples of P (see ``patch``).
        stem_width: Conv channels S of the stem built by ``embedding(dim)``.
    """

    halo: ClassVar[int] = 2

    def __init__(
        self,
        patch_size: int = 16,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        uneven: str = "reject",
        stem_width: int = 16,
    ) -> None:
        super().__init__(patch_size, channels, mean, std, uneven)
        if isinstance(stem_width, bool) or not isinstance(stem_width, int) or stem_width < 1:
            raise ValueError(f"stem_width must be a positive int, got {stem_width!r}")
        self.stem_width = stem_width

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {**super().config(), "stem_width": self.stem_width}

    def embedding(self, dim: int) -> nn.Module:
        """A ``ConvStemEmbedding`` mapping ``(B, T, F)`` windows to ``(B, T, dim)``."""
        return ConvStemEmbedding(self.channels, self.patch_size, self.halo, self.stem_width, dim)
