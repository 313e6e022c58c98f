"""modal_tf: one modality-agnostic Transformer core, tokenizer plugins, three model shapes."""

from modal_tf.core import Transformer, TransformerConfig
from modal_tf.export import Pretrained, export_checkpoint, load_pretrained
from modal_tf.models import DecoderOnly, EncoderDecoder, EncoderOnly, GenerationConfig, build_model
from modal_tf.tokenizers import Tokenizer, create_tokenizer, list_tokenizers, register_tokenizer

__version__ = "0.1.0"

__all__ = [
    "DecoderOnly",
    "EncoderDecoder",
    "EncoderOnly",
    "GenerationConfig",
    "Pretrained",
    "Tokenizer",
    "Transformer",
    "TransformerConfig",
    "build_model",
    "create_tokenizer",
    "export_checkpoint",
    "list_tokenizers",
    "load_pretrained",
    "register_tokenizer",
]
