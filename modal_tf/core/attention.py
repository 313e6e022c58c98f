"""Multi-head attention through ``F.scaled_dot_product_attention`` (``explicit_attention`` for some CPU training).

Notation: B batch, T query tokens, S key tokens (self: cache slots; cross: memory),
D model dim, H heads, Dh head dim.

Attention is a soft database lookup: each query scores every key, softmax
turns scores into weights, and the output is the weighted mix of values
(Vaswani et al. 2017, https://arxiv.org/abs/1706.03762). H heads look up in
parallel in Dh-wide subspaces. Q, K and V come from one fused projection in
self-attention (one GEMM instead of three).
"""

from __future__ import annotations

from torch import Tensor, nn

from modal_tf.core.cache import KVCache, MemoryCache
from modal_tf.core.config import TransformerConfig
from modal_tf.core.emulation import Linear
from modal_tf.core.explicit_attention import attention
from modal_tf.core.positions import apply_rotary


class SelfAttention(nn.Module):
    """Self-attention with optional rotary positions and KV cache."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.qkv = Linear(config.dim, 3 * config.dim, bias=config.bias)
        self.proj = Linear(config.dim, config.dim, bias=config.bias)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: tuple[Tensor, Tensor] | None = None,
        cache: KVCache | None = None,
        cache_start: int = 0,
    ) -> Tensor:
        """Attend ``(B, T, D)`` tokens to themselves (and to cached slots).

        Args:
            x: ``(B, T, D)`` input.
            mask: Bool mask broadcastable to ``(B, H, T, S)``, True = may attend.
            is_causal: Use SDPA's built-in causal mask (only without ``mask`` and cache prefix).
            rotary: ``(cos, sin)``, each ``(B, 1, T, Dh // 2)``.
            cache: Layer cache; the new keys/values are written at ``cache_start``.
            cache_start: Slot of the first new token in the cache.

        Returns:
            ``(B, T, D)``.
        """
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, -1))  # (B, T, 3, H, Dh)
        # Unbound along the "3" axis, not a leading one: its backward stacks dQ, dK, dV straight into the
        # projection's layout, where a leading axis needs a second, permuting copy. Plain transposes, not
        # einops, in this file: in one-token decoding steps each einops call (~20-50 us) is measurable.
        q, k, v = (z.transpose(1, 2) for z in qkv.unbind(2))  # each (B, H, T, Dh)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if cache is not None:
            k, v = cache.update(k, v, cache_start)  # (B, H, S, Dh)
        y = attention(q, k, v, mask, self.dropout if self.training else 0.0, is_causal)  # (B, H, T, Dh)
        return self.proj(y.transpose(1, 2).flatten(2))  # (B, T, D)


class CrossAttention(nn.Module):
    """Queries from the decoder, keys/values from an encoder memory (the bridge)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.q = Linear(config.dim, config.dim, bias=config.bias)
        self.kv = Linear(config.dim, 2 * config.dim, bias=config.bias)
        self.proj = Linear(config.dim, config.dim, bias=config.bias)

    def forward(
        self, x: Tensor, memory: Tensor, mask: Tensor | None = None, cache: MemoryCache | None = None
    ) -> Tensor:
        """Attend ``(B, T, D)`` queries to ``(B, S, D)`` memory; ``mask`` is ``(B, 1, 1, S)``."""
        q = self.q(x).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, H, T, Dh)
        if cache is not None and cache.keys is not None and cache.values is not None:
            k, v = cache.keys, cache.values
        else:
            kv = self.kv(memory).unflatten(-1, (2, self.num_heads, -1))  # (B, S, 2, H, Dh)
            k, v = (z.transpose(1, 2) for z in kv.unbind(2))  # each (B, H, S, Dh), as in self-attention
            if cache is not None:
                cache.keys, cache.values = k, v
        y = attention(q, k, v, mask, self.dropout if self.training else 0.0)  # (B, H, T, Dh)
        return self.proj(y.transpose(1, 2).flatten(2))  # (B, T, D)
