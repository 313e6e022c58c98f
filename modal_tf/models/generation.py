"""Autoregressive generation shared by decoder-only and encoder-decoder models.

Notation: B batch, P prompt slots, N new tokens, V vocabulary, A axes.

Prompts of unequal length are right-padded; padded slots are masked as keys,
and each row's first new token is read at its own last real prompt slot. New
tokens then occupy the same slots (``P + i``) for every row, with coordinates
continuing from each row's own prompt length. With the KV cache each step
feeds one token; without it the whole sequence is recomputed (the reference
the cache is tested against).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from modal_tf.core import DecodingCache
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch


@dataclass(frozen=True)
class GenerationConfig:
    """How to pick each new token.

    Attributes:
        max_new_tokens: Upper bound on generated tokens per row.
        temperature: 0 for greedy decoding; otherwise logits are divided by it and sampled.
        top_k: Sample only among the k most likely ids (0 = off).
        top_p: Nucleus sampling: the smallest set of ids with cumulative probability >= p (1.0 = off).
        stop_at_eos: Stop a row at EOS (later slots are filled with pad).
        use_cache: Reuse keys/values of earlier tokens (KV cache).
        num_beams: Beam search width (1 = no beam search; needs ``temperature=0``).
        length_penalty: Beam scores are ``sum log p / length ** length_penalty`` (0 = plain sum).
    """

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    stop_at_eos: bool = True
    use_cache: bool = True
    num_beams: int = 1
    length_penalty: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"num_beams must be a positive int, got {self.num_beams!r}")
        if self.num_beams > 1 and self.temperature != 0.0:
            raise ValueError(f"beam search is deterministic: set temperature=0, got {self.temperature!r}")


class GenerationOutput(NamedTuple):
    """What ``generate`` returns.

    Attributes:
        tokens: ``(B, N)`` generated ids, pad after EOS.
        lengths: ``(B,)`` tokens up to and including EOS.
        logits: ``(B, N, V)`` logits each token was chosen from (banned ids at ``-inf``); for beam
            search ``(B, N, 1)``, the log-probability of each chosen token.
    """

    tokens: Tensor
    lengths: Tensor
    logits: Tensor


class Decoder(Protocol):
    """What a model offers the generation loop."""

    target_tokenizer: DiscreteTokenizer

    def decode_step(self, context: Any, target: TokenBatch, cache: DecodingCache | None) -> Tensor:
        """Logits ``(B, T, V)`` for ``target`` slots after ``context``, continuing ``cache`` if given."""
        ...

    def new_cache(self, context: Any, batch_size: int, num_target_slots: int) -> DecodingCache:
        """An empty cache large enough for the context plus ``num_target_slots``."""
        ...


def filter_logits(logits: Tensor, config: GenerationConfig) -> Tensor:
    """Apply temperature, top-k and top-p to ``(B, V)`` logits (``-inf`` outside the kept set)."""
    logits = logits / config.temperature
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= config.top_p  # keeps the id that crosses p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: Tensor, config: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    """Pick ``(B,)`` ids from ``(B, V)`` logits (banned ids already at ``-inf``)."""
    if config.temperature == 0.0:
        return logits.argmax(-1)
    probabilities = filter_logits(logits.float(), config).softmax(-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: Decoder,
    context: Any,
    prompt: TokenBatch,
    config: GenerationConfig,
    generator: torch.Generator | None = None,
) -> GenerationOutput:
    """Continue each prompt row after ``context`` (the model's encoder memory or embedded prefix).

    See the module docstring for the slot layout. ``config.num_beams > 1`` runs beam search.
    """
    if config.num_beams > 1:
        from modal_tf.models.beam import beam_search

        return beam_search(model, context, prompt, config)
    tokenizer = model.target_tokenizer
    batch_size, prompt_slots = prompt.values.shape
    lengths = prompt.valid.sum(1)  # (B,)
    if bool((lengths == 0).any()):
        raise ValueError("every prompt row needs at least one token (e.g. bos)")
    device = prompt.values.device
    table = tokenizer.positions(prompt_slots + config.max_new_tokens).to(device)  # (P + N, A)
    banned = torch.tensor(tokenizer.non_content_ids, device=device)
    rows = torch.arange(batch_size, device=device)

    cache = model.new_cache(context, batch_size, prompt_slots + config.max_new_tokens) if config.use_cache else None
    sequence = prompt
    logits = model.decode_step(context, prompt, cache)[rows, lengths - 1]  # (B, V)

    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    produced: list[Tensor] = []
    scores: list[Tensor] = []
    for step in range(config.max_new_tokens):
        logits = logits.float().index_fill(-1, banned, float("-inf"))
        token = choose(logits, config, generator)
        token = token.masked_fill(finished, tokenizer.pad_id)
        produced.append(token)
        scores.append(logits)
        if config.stop_at_eos:
            finished = finished | (token == tokenizer.eos_id)
            if bool(finished.all()):
                break
        if step == config.max_new_tokens - 1:
            break
        new = TokenBatch(
            token[:, None],  # (B, 1)
            table[lengths + step][:, None],  # (B, 1, A)
            torch.ones(batch_size, 1, dtype=torch.bool, device=device),
        )
        if cache is not None:
            logits = model.decode_step(context, new, cache)[:, -1]
        else:
            sequence = TokenBatch(*(torch.cat(pair, dim=1) for pair in zip(sequence, new, strict=True)))
            logits = model.decode_step(context, sequence, None)[:, -1]

    tokens = torch.stack(produced, dim=1)  # (B, N)
    is_eos = tokens == tokenizer.eos_id
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, tokens.shape[1])
    return GenerationOutput(tokens, first_eos, torch.stack(scores, dim=1))
