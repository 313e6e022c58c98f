"""Whisper-like audio front end: log-mel frame pairs embedded by a two-layer conv1d stem.

Notation: B batch, T tokens, M mel bins (``n_mels``), F feature width
(``2 * M + 1``), D model dim.

Whisper (Radford et al. 2022, https://arxiv.org/abs/2212.04356, §2.2) embeds
its log-mel frames with two conv1d layers of kernel 3 and GELU, the second with
stride 2, so N frames become ceil(N / 2) embeddings. The plugin contract needs
the embedding to keep T, because coordinates and the valid mask are per token.
So the stride moves into the tokenizer: each token is two consecutive frames
stacked (space-to-depth, T = N // 2), and the stem applies two stride-1
kernel-3 convs over tokens, ``(B, T, F) -> (B, T, D)``. Output rate (one
embedding per 20 ms at 16 kHz) matches Whisper; the receptive field does not
(5 tokens = 10 frames here vs 5 frames in Whisper), so this is Whisper-like,
not a port: no Whisper weights load into it.

Padding: stacked zero-padded convs leak. The second conv at a sample's last
token would read the first conv's output at the first padded slot, which is
``GELU(bias + w · last real token)``, not zero, so a sample's embedding would
depend on what it is batched with. Each token therefore carries one extra
feature, 1.0, that collation pads with 0.0; the stem reads it as the valid mask
and zeroes padded slots before each conv, so a padded batch embeds every sample
exactly as it would embed alone (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from modal_tf.core.emulation import Conv1d
from modal_tf.tokenizers.base import Tokens
from modal_tf.tokenizers.registry import register_tokenizer
from modal_tf.tokenizers.spectrogram import SpectrogramTokenizer

FRAMES_PER_TOKEN = 2  # Whisper's conv stride


class WhisperStem(nn.Module):
    """Two kernel-3 conv1d layers with GELU over time, keeping T; the last input feature is the valid mask.

    Args:
        in_features: Feature width of a token without the mask feature (``2 * n_mels``).
        dim: Output width D.
    """

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.conv1 = Conv1d(in_features, dim, kernel_size=3, padding=1)
        self.conv2 = Conv1d(dim, dim, kernel_size=3, padding=1)

    def forward(self, values: Tensor) -> Tensor:
        """Embed ``(B, T, in_features + 1)`` tokens (last feature 1 = real, 0 = padding) to ``(B, T, dim)``."""
        if values.dim() != 3 or values.shape[-1] != self.in_features + 1:
            raise ValueError(f"WhisperStem expects values (B, T, {self.in_features + 1}), got {tuple(values.shape)}")
        keep = rearrange(values[..., -1:], "b t one -> b one t")  # (B, 1, T)
        x = rearrange(values[..., :-1], "b t f -> b f t") * keep  # (B, 2M, T)
        x = nn.functional.gelu(self.conv1(x)) * keep  # (B, D, T): padded slots back to the zeros conv padding uses
        x = nn.functional.gelu(self.conv2(x))  # (B, D, T)
        return rearrange(x, "b d t -> b t d")  # (B, T, D)


@register_tokenizer("whisper_frames")
class WhisperFrameTokenizer(SpectrogramTokenizer):
    """Whisper-like log-mel frame pairs (axis ``time``, 20 ms per token at 16 kHz) with a conv1d stem embedding.

    Tokens are two stacked frames plus a constant 1.0 valid-mask feature: ``(T, 2 * n_mels + 1)``.
    Raw samples, preprocessing and errors are those of ``SpectrogramTokenizer`` in frame mode.

    Args:
        sample_rate: Rate in Hz the audio is analysed at.
        n_fft: STFT window and FFT size in samples.
        hop_length: Samples between frames.
        n_mels: Mel bins M.
        resample: Resample other rates to ``sample_rate`` (True) or reject them (False).
        max_seconds: Longest accepted audio in seconds, or None for no limit.
        truncate: Over-long audio is cut with a warning (True) or rejected (False).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        resample: bool = True,
        max_seconds: float | None = None,
        truncate: bool = False,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            stack=FRAMES_PER_TOKEN,
            resample=resample,
            max_seconds=max_seconds,
            truncate=truncate,
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments (frame stacking is fixed, so ``stack``/``patch_size`` are not among them)."""
        config = super().config()
        del config["stack"], config["patch_size"]
        return config

    @property
    def feature_dim(self) -> int:
        """F = ``2 * n_mels`` stacked frame features + 1 valid-mask feature."""
        return FRAMES_PER_TOKEN * self.n_mels + 1

    def tokens_from_features(self, features: Tensor) -> Tokens:
        """Log-mel ``(N, M)`` to frame-pair tokens ``(N // 2, 2 * M + 1)`` with time coords ``(N // 2, 1)``."""
        frames = super().tokens_from_features(features)
        mask = torch.ones(frames.values.shape[0], 1)  # (T, 1): collation pads it with 0.0 = padding
        return Tokens(torch.cat([frames.values, mask], dim=1), frames.coords)  # (T, 2M + 1)

    def embedding(self, dim: int) -> nn.Module:
        """The ``WhisperStem`` mapping ``(B, T, 2M + 1)`` to ``(B, T, dim)``."""
        return WhisperStem(FRAMES_PER_TOKEN * self.n_mels, dim)
