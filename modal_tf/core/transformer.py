"""The modality-agnostic Transformer stack.

Notation: B batch, T tokens, S memory tokens, A coordinate axes, D model dim.

The stack only ever sees ``(B, T, D)`` embeddings, validity masks and integer
coordinates; it never knows which modality produced them.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from modal_tf.core.block import Block
from modal_tf.core.cache import DecodingCache
from modal_tf.core.config import TransformerConfig
from modal_tf.core.layers import make_norm
from modal_tf.core.masks import memory_mask, self_attention_mask
from modal_tf.core.positions import RotaryPositions


class Transformer(nn.Module):
    """``depth`` pre-norm blocks and a final norm.

    Args:
        config: Stack shape.
        num_axes: Coordinate axes A the stack will see (only used by ``rope``).
        block: ``Block`` (encoder / decoder-only) or ``CrossBlock`` (encoder-decoder decoder).
    """

    def __init__(self, config: TransformerConfig, num_axes: int = 1, block: type[Block] = Block) -> None:
        super().__init__()
        self.config = config
        self.rotary = (
            RotaryPositions(config.head_dim, num_axes, config.rope_base) if config.position == "rope" else None
        )
        self.blocks = nn.ModuleList(block(config) for _ in range(config.depth))
        self.norm = make_norm(config)
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the stream's variance flat with depth.
        for name, parameter in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(
        self,
        x: Tensor,
        *,
        valid: Tensor | None = None,
        coords: Tensor | None = None,
        causal: bool = False,
        prefix_length: int = 0,
        memory: Tensor | None = None,
        memory_valid: Tensor | None = None,
        cache: DecodingCache | None = None,
    ) -> Tensor:
        """Run the stack.

        Args:
            x: ``(B, T, D)`` token embeddings (positions already added unless ``rope``).
            valid: ``(B, T)`` bool, False at padding; None when nothing is padded.
            coords: ``(B, T, A)`` integer coordinates, required for ``rope``.
            causal: Causal self-attention (decoders).
            prefix_length: With ``causal``, the first slots form a bidirectional prefix (prefix-LM).
            memory: ``(B, S, D)`` encoder output for cross-attention blocks.
            memory_valid: ``(B, S)`` bool validity of ``memory``.
            cache: Decoding cache; ``x`` continues the cached sequence.

        Returns:
            ``(B, T, D)`` normalized hidden states.
        """
        start = cache.length if cache is not None else 0
        key_valid = cache.record(valid, x.shape[1]) if cache is not None else valid
        mask, is_causal = self_attention_mask(
            key_valid, num_queries=x.shape[1], query_start=start, causal=causal, prefix_length=prefix_length
        )
        rotary = None
        if self.rotary is not None:
            if coords is None:
                raise ValueError("position='rope' needs coords of shape (B, T, A), got None")
            rotary = self.rotary(coords)
        cross_mask = memory_mask(memory_valid)
        for index, block in enumerate(self.blocks):
            layer_cache = (cache.layers[index], cache.memory[index]) if cache is not None else None
            x = block(x, mask, is_causal, rotary, memory, cross_mask, layer_cache, start)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x)

    def new_cache(self, batch_size: int, capacity: int, device: object = None) -> DecodingCache:
        """An empty cache for ``batch_size`` sequences of up to ``capacity`` slots."""
        return DecodingCache(len(self.blocks), batch_size, capacity, device)  # type: ignore[arg-type]
