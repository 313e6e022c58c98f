"""Tokenizer plugins: the contract, the registry and the built-in tokenizers.

Importing this package registers every built-in tokenizer.
"""

from modal_tf.tokenizers.action_mulaw import ActionMuLawTokenizer
from modal_tf.tokenizers.actions import ActionBinsTokenizer
from modal_tf.tokenizers.base import DiscreteTokenizer, FeatureTokenizer, TokenBatch, Tokenizer, Tokens, collate_tokens
from modal_tf.tokenizers.bpe import BPETokenizer
from modal_tf.tokenizers.bytes import ByteTokenizer
from modal_tf.tokenizers.conv_stem import ConvPatchTokenizer
from modal_tf.tokenizers.fast import ActionFastTokenizer
from modal_tf.tokenizers.patch import PatchTokenizer
from modal_tf.tokenizers.registry import (
    ENTRY_POINT_GROUP,
    create_tokenizer,
    list_tokenizers,
    load_tokenizer,
    register_tokenizer,
    tokenizer_class,
    tokenizer_from_spec,
    tokenizer_from_state,
)
from modal_tf.tokenizers.spectrogram import SpectrogramTokenizer
from modal_tf.tokenizers.vector import VectorTokenizer
from modal_tf.tokenizers.waveform import Audio
from modal_tf.tokenizers.whisper_stem import WhisperFrameTokenizer

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActionBinsTokenizer",
    "ActionFastTokenizer",
    "ActionMuLawTokenizer",
    "Audio",
    "BPETokenizer",
    "ByteTokenizer",
    "ConvPatchTokenizer",
    "DiscreteTokenizer",
    "FeatureTokenizer",
    "PatchTokenizer",
    "SpectrogramTokenizer",
    "TokenBatch",
    "Tokenizer",
    "Tokens",
    "VectorTokenizer",
    "WhisperFrameTokenizer",
    "collate_tokens",
    "create_tokenizer",
    "list_tokenizers",
    "load_tokenizer",
    "register_tokenizer",
    "tokenizer_class",
    "tokenizer_from_spec",
    "tokenizer_from_state",
]
