"""Encoder-decoder model: the original Transformer shape (Vaswani et al. 2017).

Notation: B batch, S source tokens, T target slots, D model dim, V vocabulary.

The encoder reads every input bidirectionally; the decoder writes the target
causally and reads the encoder's memory through cross-attention, the bridge
between the two halves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from modal_tf.core import CrossBlock, DecodingCache, Linear, Transformer, TransformerConfig
from modal_tf.models.embedder import SegmentEmbedder, valid_or_none
from modal_tf.models.generation import GenerationConfig, GenerationOutput, generate
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch, Tokenizer

TARGET = "target"


class Memory(NamedTuple):
    """Encoder output ``x`` ``(B, S, D)`` and its validity ``(B, S)``."""

    x: Tensor
    valid: Tensor


class EncoderDecoder(nn.Module):
    """Encoder over any inputs, causal decoder with cross-attention over a discrete target.

    Args:
        config: Encoder config (and decoder config unless ``decoder_config`` is given).
        inputs: Input name to tokenizer for the encoder.
        target: Tokenizer of the generated sequence.
        decoder_config: Optional separate decoder config (same ``dim``).
    """

    def __init__(
        self,
        config: TransformerConfig,
        inputs: Mapping[str, Tokenizer],
        target: DiscreteTokenizer,
        decoder_config: TransformerConfig | None = None,
    ) -> None:
        super().__init__()
        decoder_config = decoder_config or config
        if decoder_config.dim != config.dim:
            raise ValueError(f"decoder dim must equal encoder dim {config.dim}, got {decoder_config.dim}")
        self.config = config
        self.target_tokenizer = target
        self.encoder_embedder = SegmentEmbedder(config, inputs)
        self.encoder = Transformer(config, self.encoder_embedder.num_axes)
        self.decoder_embedder = SegmentEmbedder(decoder_config, {TARGET: target})
        self.decoder = Transformer(decoder_config, len(target.axes), block=CrossBlock)
        self.head = Linear(config.dim, target.vocab_size, bias=False)
        self.head.weight = self.decoder_embedder.target_table().weight  # weight tying (Press & Wolf 2017)

    def encode(self, inputs: Mapping[str, TokenBatch]) -> Memory:
        """Encoder memory for ``inputs``; every row needs at least one real token."""
        x, valid, coords = self.encoder_embedder(inputs)
        if x.shape[1] == 0 or not bool(valid.any(1).all()):
            raise ValueError("every encoder input row needs at least one real token, got an empty row")
        return Memory(self.encoder(x, valid=valid_or_none(valid), coords=coords), valid)

    def decode_step(self, context: Memory, target: TokenBatch, cache: DecodingCache | None) -> Tensor:
        """Logits ``(B, T, V)`` for ``target`` slots given encoder memory."""
        x = self.decoder_embedder.embed(TARGET, target.values, target.coords)  # (B, T, D)
        hidden = self.decoder(
            x,
            valid=valid_or_none(target.valid),
            coords=target.coords,
            causal=True,
            memory=context.x,
            memory_valid=valid_or_none(context.valid),
            cache=cache,
        )
        return self.head(hidden)

    def new_cache(self, context: Memory, batch_size: int, num_target_slots: int) -> DecodingCache:
        """Cache for ``num_target_slots`` decoder slots (memory keys/values are cached on first use)."""
        return self.decoder.new_cache(batch_size, num_target_slots, context.x.device)

    def forward(self, inputs: Mapping[str, TokenBatch], target: TokenBatch) -> Tensor:
        """Teacher-forced logits ``(B, T, V)``."""
        return self.decode_step(self.encode(inputs), target, None)

    def generate(
        self,
        inputs: Mapping[str, TokenBatch],
        prompt: TokenBatch,
        config: GenerationConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> GenerationOutput:
        """Generate a target for each input row, starting from ``prompt`` (e.g. ``bos``)."""
        return generate(self, self.encode(inputs), prompt, config or GenerationConfig(), generator)
