"""Encoder-only parallel decoding: predict a whole target chunk (e.g. robot actions) in one pass.

Notation: B batch, T input tokens, Q target slots, D model dim, V vocabulary.

Q learned query tokens are appended to the inputs (DETR/ACT-style queries; Zhao et
al. 2023, https://arxiv.org/abs/2304.13705), attend bidirectionally with them, and
one linear head reads each slot's id. Slot i predicts target token i (EOS included,
so variable-length targets end where the model says). No autoregression: one
forward per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from modal_tf.core import Linear, Transformer, TransformerConfig
from modal_tf.models.embedder import SegmentEmbedder, valid_or_none
from modal_tf.models.generation import GenerationConfig, GenerationOutput
from modal_tf.models.sequence import IGNORE_INDEX
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch, Tokenizer


class EncoderChunk(nn.Module):
    """Encoder with Q query slots and a per-slot classifier over the target vocabulary.

    Args:
        config: Core config.
        inputs: Input name to tokenizer.
        target: Tokenizer of the predicted chunk.
        num_slots: Q, target tokens predicted per sample (content plus EOS).
    """

    def __init__(
        self, config: TransformerConfig, inputs: Mapping[str, Tokenizer], target: DiscreteTokenizer, num_slots: int
    ) -> None:
        super().__init__()
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.target_tokenizer = target
        self.num_slots = num_slots
        self.embedder = SegmentEmbedder(config, inputs)
        self.queries = nn.Parameter(torch.randn(1, num_slots, config.dim) * 0.02)
        self.encoder = Transformer(config, self.embedder.num_axes)
        self.head = Linear(config.dim, target.vocab_size)

    def forward(self, inputs: Mapping[str, TokenBatch]) -> Tensor:
        """Slot logits ``(B, Q, V)``."""
        x, valid, coords = self.embedder(inputs)  # (B, T, D), (B, T), (B, T, A)
        batch = x.shape[0]
        x = torch.cat([x, self.queries.expand(batch, -1, -1)], dim=1)  # (B, T + Q, D)
        valid = torch.cat([valid, valid.new_ones(batch, self.num_slots)], dim=1)
        coords = torch.cat([coords, coords.new_zeros(batch, self.num_slots, coords.shape[-1])], dim=1)
        hidden = self.encoder(x, valid=valid_or_none(valid), coords=coords)
        return self.head(hidden[:, -self.num_slots :])

    def slot_labels(self, target: TokenBatch) -> Tensor:
        """``(B, Q)`` labels: the target after BOS, cut or padded (ignored) to Q slots."""
        labels = target.values[:, 1:].masked_fill(~target.valid[:, 1:], IGNORE_INDEX)  # (B, T - 1)
        missing = self.num_slots - labels.shape[1]
        if missing > 0:
            labels = nn.functional.pad(labels, (0, missing), value=IGNORE_INDEX)
        return labels[:, : self.num_slots]

    @torch.no_grad()
    def generate(
        self,
        inputs: Mapping[str, TokenBatch],
        prompt: TokenBatch | None = None,
        config: GenerationConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> GenerationOutput:
        """Most likely id per slot (never pad/bos); ``lengths`` run up to and including the first EOS."""
        logits = self(inputs).float()  # (B, Q, V)
        banned = torch.tensor(self.target_tokenizer.non_content_ids, device=logits.device)
        logits = logits.index_fill(-1, banned, float("-inf"))
        tokens = logits.argmax(-1)  # (B, Q)
        is_eos = tokens == self.target_tokenizer.eos_id
        lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, tokens.shape[1])
        return GenerationOutput(tokens, lengths, logits)
