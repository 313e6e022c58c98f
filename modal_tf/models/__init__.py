"""Three model shapes over one core, and the builder that picks one by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from modal_tf.core import TransformerConfig
from modal_tf.models.decoder_only import DecoderOnly
from modal_tf.models.encoder_chunk import EncoderChunk
from modal_tf.models.encoder_decoder import EncoderDecoder
from modal_tf.models.encoder_only import EncoderOnly
from modal_tf.models.generation import GenerationConfig, GenerationOutput, generate
from modal_tf.models.sequence import next_token_loss, shift_target
from modal_tf.tokenizers import DiscreteTokenizer, Tokenizer

SHAPES = ("encoder_only", "decoder_only", "encoder_decoder", "timm")


def build_model(
    shape: str,
    config: TransformerConfig,
    inputs: Mapping[str, Tokenizer],
    target: DiscreteTokenizer | None = None,
    num_classes: int | None = None,
    pooling: str = "cls",
    timm_model: str = "resnet18",
    timm_kwargs: Mapping[str, Any] | None = None,
    num_slots: int = 16,
    timm_stem: str = "",
) -> nn.Module:
    """Build the model ``shape`` for a task.

    Classification (``num_classes``) needs ``encoder_only`` (or ``timm``, a CNN/timm baseline on
    the same patch tokens); sequence generation (``target``) uses ``decoder_only`` (inputs become a
    prefix), ``encoder_decoder``, or ``encoder_only`` (``num_slots`` tokens predicted in parallel).
    """
    if shape not in SHAPES:
        raise ValueError(f"model shape must be one of {SHAPES}, got {shape!r}")
    if shape == "timm":
        if num_classes is None:
            raise ValueError("shape 'timm' needs a classification task (num_classes), got a generation task")
        from modal_tf.models.timm_image import TimmImageClassifier

        return TimmImageClassifier(timm_model, inputs, num_classes, timm_kwargs, timm_stem)
    if shape == "encoder_only" and num_classes is not None:
        return EncoderOnly(config, inputs, num_classes, pooling)
    if target is None:
        raise ValueError(f"shape {shape!r} generates a target sequence, but the task has no target tokenizer")
    if not isinstance(target, DiscreteTokenizer):
        raise TypeError(f"the target tokenizer must be discrete (ids), got {type(target).__name__}")
    if shape == "encoder_only":
        return EncoderChunk(config, inputs, target, num_slots)
    if shape == "decoder_only":
        return DecoderOnly(config, target, inputs)
    return EncoderDecoder(config, inputs, target)


__all__ = [
    "SHAPES",
    "DecoderOnly",
    "EncoderChunk",
    "EncoderDecoder",
    "EncoderOnly",
    "GenerationConfig",
    "GenerationOutput",
    "build_model",
    "generate",
    "next_token_loss",
    "shift_target",
]
