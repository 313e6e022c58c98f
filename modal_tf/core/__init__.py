"""The modality-agnostic Transformer core: imports only torch and einops."""

from modal_tf.core.attention import CrossAttention, SelfAttention
from modal_tf.core.block import Block, CrossBlock
from modal_tf.core.cache import DecodingCache, KVCache
from modal_tf.core.config import TransformerConfig
from modal_tf.core.emulation import Conv1d, Conv2d, Linear, native_reduced_precision
from modal_tf.core.masks import self_attention_mask
from modal_tf.core.positions import (
    LearnedGridPositions,
    LearnedPositions,
    RotaryPositions,
    SinusoidalPositions,
    additive_positions,
)
from modal_tf.core.transformer import Transformer

__all__ = [
    "Block",
    "Conv1d",
    "Conv2d",
    "CrossAttention",
    "CrossBlock",
    "DecodingCache",
    "KVCache",
    "LearnedGridPositions",
    "LearnedPositions",
    "Linear",
    "RotaryPositions",
    "SelfAttention",
    "SinusoidalPositions",
    "Transformer",
    "TransformerConfig",
    "additive_positions",
    "native_reduced_precision",
    "self_attention_mask",
]
