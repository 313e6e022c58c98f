"""Embedding of named input segments into one ``(B, T, D)`` sequence.

Notation: B batch, T tokens, F feature width, A coordinate axes, D model dim.

Each segment (an input such as ``image`` or ``text``, or the decoder's
``target``) is embedded by its tokenizer's own module, gets its additive
positions, and, when a model sees more than one segment, a learned
per-segment type embedding (BERT's token-type idea), so the core can tell
segments apart without ever knowing their modality.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from modal_tf.core import TransformerConfig, additive_positions
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch, Tokenizer


def pad_axes(coords: Tensor, num_axes: int) -> Tensor:
    """Zero-pad ``(B, T, a)`` coordinates to ``(B, T, num_axes)``."""
    missing = num_axes - coords.shape[-1]
    return nn.functional.pad(coords, (0, missing)) if missing > 0 else coords


class SegmentEmbedder(nn.Module):
    """Embeds each named segment and concatenates them in declaration order.

    Args:
        config: Core config (``dim``, ``position``, ``dropout``).
        tokenizers: Segment name to tokenizer, in sequence order.
    """

    def __init__(self, config: TransformerConfig, tokenizers: Mapping[str, Tokenizer]) -> None:
        super().__init__()
        if not tokenizers:
            raise ValueError("a model needs at least one input tokenizer, got none")
        self.tokenizers = dict(tokenizers)
        self.names = list(tokenizers)
        self.num_axes = max(len(tokenizer.axes) for tokenizer in tokenizers.values())
        self.embeddings = nn.ModuleDict({name: tok.embedding(config.dim) for name, tok in tokenizers.items()})
        self.positions = nn.ModuleDict()
        for name, tokenizer in tokenizers.items():
            try:
                module = additive_positions(config, len(tokenizer.axes))
            except ValueError as error:  # e.g. a 2-axis input with learned_grid but no position_grid
                raise ValueError(f"input {name!r} with axes {tokenizer.axes}: {error}") from None
            if module is not None:
                self.positions[name] = module
        self.types = nn.Embedding(len(tokenizers), config.dim) if len(tokenizers) > 1 else None
        if self.types is not None:
            nn.init.normal_(self.types.weight, std=0.02)
        self.dropout = nn.Dropout(config.dropout)

    def target_table(self, name: str = "target") -> nn.Embedding:
        """The lookup table of a discrete segment (the LM head ties its weight to it)."""
        table = self.embeddings[name]
        if not isinstance(table, nn.Embedding):
            raise TypeError(
                f"segment {name!r} must embed with nn.Embedding to tie the LM head, got {type(table).__name__}"
            )
        return table

    def embed(self, name: str, values: Tensor, coords: Tensor) -> Tensor:
        """Embed one segment's ``(B, T)`` ids or ``(B, T, F)`` features at ``(B, T, a)`` coordinates."""
        self._check(name, values, coords)
        x = self.embeddings[name](values)  # (B, T, D)
        if name in self.positions:
            x = x + self.positions[name](coords)
        if self.types is not None:
            x = x + self.types.weight[self.names.index(name)]
        return self.dropout(x)

    def forward(
        self, batches: Mapping[str, TokenBatch], names: list[str] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Embed and concatenate segments ``names`` (default: all).

        Returns:
            ``x`` ``(B, T, D)``, ``valid`` ``(B, T)`` bool and ``coords`` ``(B, T, A)``.
        """
        names = self.names if names is None else names
        missing = [name for name in names if name not in batches]
        if missing:
            raise ValueError(f"model inputs must include {names}, missing {missing}; got {sorted(batches)}")
        parts = [self.embed(name, batches[name].values, batches[name].coords) for name in names]
        valid = torch.cat([batches[name].valid for name in names], dim=1)  # (B, T)
        coords = torch.cat([pad_axes(batches[name].coords, self.num_axes) for name in names], dim=1)  # (B, T, A)
        return torch.cat(parts, dim=1), valid, coords

    def _check(self, name: str, values: Tensor, coords: Tensor) -> None:
        tokenizer = self.tokenizers[name]
        axes = len(tokenizer.axes)
        if coords.dim() != 3 or coords.shape[-1] != axes or coords.shape[:2] != values.shape[:2]:
            raise ValueError(
                f"input {name!r}: coords must have shape (B, T, {axes}) matching values {tuple(values.shape)}, "
                f"got {tuple(coords.shape)}"
            )
        if isinstance(tokenizer, DiscreteTokenizer):
            if values.dim() != 2 or values.dtype not in (torch.int64, torch.int32):
                raise ValueError(
                    f"input {name!r}: expected int64 ids of shape (B, T), got {values.dtype} {tuple(values.shape)}"
                )
            if values.numel() and (int(values.min()) < 0 or int(values.max()) >= tokenizer.vocab_size):
                raise ValueError(
                    f"input {name!r}: ids must lie in [0, {tokenizer.vocab_size}), "
                    f"got values in [{int(values.min())}, {int(values.max())}]"
                )
        elif values.dim() != 3 or not values.is_floating_point():
            raise ValueError(
                f"input {name!r}: expected float features of shape (B, T, F), got {values.dtype} {tuple(values.shape)}"
            )


def valid_or_none(valid: Tensor) -> Tensor | None:
    """None when no slot is padded, so attention can take its unmasked fast path."""
    return None if bool(valid.all()) else valid
