"""Pre-norm Transformer blocks (Xiong et al. 2020, https://arxiv.org/abs/2002.04745).

Notation: B batch, T tokens, S memory tokens, D model dim.
"""

from __future__ import annotations

from torch import Tensor, nn

from modal_tf.core.attention import CrossAttention, SelfAttention
from modal_tf.core.cache import KVCache, MemoryCache
from modal_tf.core.config import TransformerConfig
from modal_tf.core.layers import make_mlp, make_norm


class Block(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = SelfAttention(config)
        self.mlp_norm = make_norm(config)
        self.mlp = make_mlp(config)
        # Identity at p = 0: even a no-op Dropout call costs ~15 us, 13 times per token when decoding
        self.dropout: nn.Module = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: tuple[Tensor, Tensor] | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: tuple[KVCache, MemoryCache] | None = None,
        cache_start: int = 0,
    ) -> Tensor:
        """``(B, T, D) -> (B, T, D)``; ``memory`` is ignored by this class (no cross-attention)."""
        self_cache = cache[0] if cache is not None else None
        x = x + self.dropout(self.attn(self.attn_norm(x), mask, is_causal, rotary, self_cache, cache_start))
        x = self._cross(x, memory, memory_mask, cache[1] if cache is not None else None)
        return x + self.dropout(self.mlp(self.mlp_norm(x)))

    def _cross(self, x: Tensor, memory: Tensor | None, memory_mask: Tensor | None, cache: MemoryCache | None) -> Tensor:
        return x


class CrossBlock(Block):
    """A decoder block: self-attention, cross-attention over ``(B, S, D)`` memory, MLP."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.cross_norm = make_norm(config)
        self.cross = CrossAttention(config)

    def _cross(self, x: Tensor, memory: Tensor | None, memory_mask: Tensor | None, cache: MemoryCache | None) -> Tensor:
        if memory is None:
            raise ValueError("a CrossBlock needs memory of shape (B, S, D), got None")
        return x + self.dropout(self.cross(self.cross_norm(x), memory, memory_mask, cache))
