"""Encoder-only model: bidirectional attention over all inputs (BERT / ViT shape).

Notation: B batch, T tokens, D model dim, C classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from modal_tf.core import Linear, Transformer, TransformerConfig
from modal_tf.models.embedder import SegmentEmbedder, valid_or_none
from modal_tf.tokenizers import TokenBatch, Tokenizer

POOLINGS = ("cls", "mean")


class EncoderOnly(nn.Module):
    """Encodes every input segment jointly; pools to one vector for classification.

    Args:
        config: Core config.
        inputs: Input name to tokenizer, in sequence order.
        num_classes: Size of the classification head, or None for per-token outputs only.
        pooling: ``cls`` (a learned class token prepended, as in BERT/ViT) or ``mean``
            (masked mean over real tokens).
    """

    def __init__(
        self,
        config: TransformerConfig,
        inputs: Mapping[str, Tokenizer],
        num_classes: int | None = None,
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 or None, got {num_classes}")
        self.config = config
        self.pooling = pooling
        self.embedder = SegmentEmbedder(config, inputs)
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02) if pooling == "cls" else None
        self.encoder = Transformer(config, self.embedder.num_axes)
        self.head = Linear(config.dim, num_classes) if num_classes is not None else None

    def encode(self, inputs: Mapping[str, TokenBatch]) -> tuple[Tensor, Tensor]:
        """Per-token hidden states ``(B, T, D)`` and validity ``(B, T)`` (class token first, if any)."""
        x, valid, coords = self.embedder(inputs)  # (B, T, D), (B, T), (B, T, A)
        if self.cls_token is not None:
            batch = x.shape[0]
            x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1)  # (B, 1 + T, D)
            valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)
            coords = torch.cat([coords.new_zeros(batch, 1, coords.shape[-1]), coords], dim=1)
        hidden = self.encoder(x, valid=valid_or_none(valid), coords=coords)
        return hidden, valid

    def pool(self, hidden: Tensor, valid: Tensor) -> Tensor:
        """``(B, T, D)`` hidden states to ``(B, D)``."""
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = valid.to(hidden.dtype)[..., None]  # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward(self, inputs: Mapping[str, TokenBatch]) -> Tensor:
        """Class logits ``(B, C)``."""
        if self.head is None:
            raise ValueError("this EncoderOnly has no classification head (num_classes=None); use encode()")
        hidden, valid = self.encode(inputs)
        return self.head(self.pool(hidden, valid))
