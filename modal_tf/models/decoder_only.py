"""Decoder-only model: causal LM over a discrete target, optional prefix inputs.

Notation: B batch, P prefix tokens, T target slots, D model dim, V vocabulary.

With prefix inputs of any modality the model is a prefix-LM: attention is
bidirectional inside the prefix and causal over the target (Raffel et al. 2020;
PaliGemma's image+prompt prefix, https://arxiv.org/abs/2407.07726).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from modal_tf.core import DecodingCache, Linear, Transformer, TransformerConfig
from modal_tf.models.embedder import SegmentEmbedder, pad_axes, valid_or_none
from modal_tf.models.generation import GenerationConfig, GenerationOutput, generate
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch, Tokenizer

TARGET = "target"


class Prefix(NamedTuple):
    """Embedded prefix: ``x`` ``(B, P, D)``, ``valid`` ``(B, P)``, ``coords`` ``(B, P, A)``; P may be 0."""

    x: Tensor
    valid: Tensor
    coords: Tensor


class DecoderOnly(nn.Module):
    """GPT-shaped decoder with a tied LM head.

    Args:
        config: Core config.
        target: Tokenizer of the generated sequence.
        prefix: Optional input name to tokenizer for the bidirectional prefix.
    """

    def __init__(
        self,
        config: TransformerConfig,
        target: DiscreteTokenizer,
        prefix: Mapping[str, Tokenizer] | None = None,
    ) -> None:
        super().__init__()
        prefix = dict(prefix or {})
        if TARGET in prefix:
            raise ValueError(f"prefix input name {TARGET!r} is reserved for the target sequence")
        self.config = config
        self.target_tokenizer = target
        self.prefix_names = list(prefix)
        self.embedder = SegmentEmbedder(config, {**prefix, TARGET: target})
        self.decoder = Transformer(config, self.embedder.num_axes)
        self.head = Linear(config.dim, target.vocab_size, bias=False)
        self.head.weight = self.embedder.target_table().weight  # weight tying (Press & Wolf 2017)

    def embed_prefix(self, inputs: Mapping[str, TokenBatch], batch_size: int, device: torch.device) -> Prefix:
        """Embed the prefix inputs; an empty ``(B, 0, D)`` prefix for a plain LM."""
        if self.prefix_names:
            return Prefix(*self.embedder(inputs, self.prefix_names))
        x = torch.zeros(batch_size, 0, self.config.dim, device=device, dtype=self.head.weight.dtype)
        coords = torch.zeros(batch_size, 0, self.embedder.num_axes, dtype=torch.long, device=device)
        return Prefix(x, torch.ones(batch_size, 0, dtype=torch.bool, device=device), coords)

    def decode_step(self, context: Prefix, target: TokenBatch, cache: DecodingCache | None) -> Tensor:
        """Logits ``(B, T, V)`` for ``target`` slots; the prefix is fed on the first (or uncached) call."""
        x = self.embedder.embed(TARGET, target.values, target.coords)  # (B, T, D)
        valid, coords = target.valid, pad_axes(target.coords, self.embedder.num_axes)
        prefix_length = context.x.shape[1]
        if prefix_length and (cache is None or cache.length == 0):  # the prefix enters the sequence (and cache) once
            x = torch.cat([context.x, x], dim=1)  # (B, P + T, D)
            valid = torch.cat([context.valid, valid], dim=1)  # (B, P + T)
            coords = torch.cat([context.coords, coords], dim=1)  # (B, P + T, A)
        hidden = self.decoder(
            x, valid=valid_or_none(valid), coords=coords, causal=True, prefix_length=prefix_length, cache=cache
        )
        return self.head(hidden[:, -target.values.shape[1] :])

    def new_cache(self, context: Prefix, batch_size: int, num_target_slots: int) -> DecodingCache:
        """Cache for the prefix plus ``num_target_slots``."""
        return self.decoder.new_cache(batch_size, context.x.shape[1] + num_target_slots, context.x.device)

    def forward(self, inputs: Mapping[str, TokenBatch], target: TokenBatch) -> Tensor:
        """Teacher-forced logits ``(B, T, V)`` for every target slot."""
        prefix = self.embed_prefix(inputs, target.values.shape[0], target.values.device)
        return self.decode_step(prefix, target, None)

    def generate(
        self,
        inputs: Mapping[str, TokenBatch],
        prompt: TokenBatch,
        config: GenerationConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> GenerationOutput:
        """Continue ``prompt`` (e.g. just ``bos``) after the prefix ``inputs``."""
        prefix = self.embed_prefix(inputs, prompt.values.shape[0], prompt.values.device)
        return generate(self, prefix, prompt, config or GenerationConfig(), generator)
