"""Key/value caches for incremental decoding.

Notation: B batch, H heads, S cache capacity (slots), T new tokens, Dh head dim.

Self-attention keys/values are written into buffers allocated once for the
whole generation (no ``torch.cat`` growth per token); cross-attention keys and
values of the encoder memory are computed on the first step and reused.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Pre-allocated keys and values of one self-attention layer."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys: Tensor | None = None  # (B, H, S, Dh)
        self.values: Tensor | None = None  # (B, H, S, Dh)

    def update(self, keys: Tensor, values: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write ``(B, H, T, Dh)`` keys/values at slot ``start``; return all slots up to ``start + T``."""
        end = start + keys.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} slots, but {end} were requested; raise its capacity")
        if self.keys is None or self.values is None:
            batch, heads, _, head_dim = keys.shape
            self.keys = keys.new_empty(batch, heads, self.capacity, head_dim)
            self.values = values.new_empty(batch, heads, self.capacity, head_dim)
        self.keys[:, :, start:end] = keys
        self.values[:, :, start:end] = values
        return self.keys[:, :, :end], self.values[:, :, :end]

    def reorder(self, rows: Tensor) -> None:
        """Keep batch rows ``rows`` ``(B,)`` (beam search moves hypotheses between rows)."""
        if self.keys is not None and self.values is not None:
            self.keys, self.values = self.keys[rows], self.values[rows]


class MemoryCache:
    """Cross-attention keys/values of a fixed encoder memory, computed once."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None  # (B, H, Tm, Dh)
        self.values: Tensor | None = None  # (B, H, Tm, Dh)


class DecodingCache:
    """Everything one Transformer stack needs to continue a sequence token by token.

    Attributes:
        length: Slots already filled.
        key_valid: ``(B, S)`` bool, which filled slots hold real (non-pad) tokens.
    """

    def __init__(self, depth: int, batch_size: int, capacity: int, device: torch.device | str | None = None) -> None:
        self.capacity = capacity
        self.length = 0
        self.layers = [KVCache(capacity) for _ in range(depth)]
        self.memory = [MemoryCache() for _ in range(depth)]
        self.key_valid = torch.ones(batch_size, capacity, dtype=torch.bool, device=device)
        self.has_padding = False

    def reorder(self, rows: Tensor) -> None:
        """Keep batch rows ``rows`` ``(B,)`` of every layer (memory K/V are identical per beam group)."""
        for layer in self.layers:
            layer.reorder(rows)
        for memory in self.memory:
            if memory.keys is not None and memory.values is not None:
                memory.keys, memory.values = memory.keys[rows], memory.values[rows]
        self.key_valid = self.key_valid[rows]

    def record(self, valid: Tensor | None, num_tokens: int) -> Tensor | None:
        """Store the validity of ``num_tokens`` new slots; return validity of all slots so far."""
        end = self.length + num_tokens
        if end > self.capacity:
            raise ValueError(f"decoding cache holds {self.capacity} slots, but {end} were requested")
        if valid is not None:
            self.key_valid[:, self.length : end] = valid
            self.has_padding = True
        return self.key_valid[:, :end] if self.has_padding else None
