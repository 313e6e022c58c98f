"""Beam search over the shared decoding protocol.

Notation: B batch, K beams, N new tokens, V vocabulary.

Each prompt row becomes K hypotheses (rows ``b*K .. b*K+K-1``); every step
keeps the K best continuations of all K*V candidates per row. A hypothesis that
emitted EOS is finished: it continues with pad at log-probability 0, so its
score is frozen and it competes with open ones on equal terms. Caches and the
model context are reordered by row when hypotheses move.
"""

from __future__ import annotations

from typing import Any

import torch

from modal_tf.models.generation import Decoder, GenerationConfig, GenerationOutput
from modal_tf.tokenizers import TokenBatch


def _repeat(value: Any, times: int) -> Any:
    """Repeat every tensor of a (named) tuple ``times`` along dim 0."""
    return type(value)(*(item.repeat_interleave(times, 0) for item in value))


@torch.no_grad()
def beam_search(model: Decoder, context: Any, prompt: TokenBatch, config: GenerationConfig) -> GenerationOutput:
    """The highest-scoring continuation of each prompt row; ``logits`` are its step log-probabilities."""
    tokenizer = model.target_tokenizer
    beams = config.num_beams
    batch_size, prompt_slots = prompt.values.shape
    lengths = prompt.valid.sum(1).repeat_interleave(beams)  # (B*K,)
    device = prompt.values.device
    table = tokenizer.positions(prompt_slots + config.max_new_tokens).to(device)  # (P + N, A)
    banned = torch.tensor(tokenizer.non_content_ids, device=device)
    rows = torch.arange(batch_size * beams, device=device)
    base = torch.arange(batch_size, device=device)[:, None] * beams  # (B, 1)

    context = _repeat(context, beams)
    prompt = _repeat(prompt, beams)
    cache = (
        model.new_cache(context, batch_size * beams, prompt_slots + config.max_new_tokens) if config.use_cache else None
    )
    sequence = prompt
    logits = model.decode_step(context, prompt, cache)[rows, lengths - 1]  # (B*K, V)

    scores = torch.full((batch_size, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    scores = scores.flatten()  # (B*K,)
    finished = torch.zeros(batch_size * beams, dtype=torch.bool, device=device)
    tokens = torch.zeros(batch_size * beams, 0, dtype=torch.long, device=device)
    steps = torch.zeros(batch_size * beams, 0, device=device)
    vocab = logits.shape[-1]
    for step in range(config.max_new_tokens):
        log_probs = logits.float().index_fill(-1, banned, float("-inf")).log_softmax(-1)  # (B*K, V)
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[:, tokenizer.pad_id] = 0.0  # a finished hypothesis only extends with pad, at no cost
        log_probs = torch.where(finished[:, None], frozen, log_probs)
        candidates = (scores[:, None] + log_probs).view(batch_size, beams * vocab)  # (B, K*V)
        scores, flat = candidates.topk(beams, dim=-1)  # (B, K)
        source = (base + flat // vocab).flatten()  # (B*K,) row each winner extends
        token = (flat % vocab).flatten()  # (B*K,)
        scores = scores.flatten()
        step_scores = log_probs[source, token]
        tokens = torch.cat([tokens[source], token[:, None]], dim=1)
        steps = torch.cat([steps[source], step_scores[:, None]], dim=1)
        finished = finished[source] | (config.stop_at_eos & (token == tokenizer.eos_id))
        if bool(finished.all()) or step == config.max_new_tokens - 1:
            break
        new = TokenBatch(
            token[:, None],
            table[lengths + step][:, None],
            torch.ones(batch_size * beams, 1, dtype=torch.bool, device=device),
        )
        if cache is not None:
            cache.reorder(source)
            logits = model.decode_step(context, new, cache)[:, -1]
        else:
            sequence = TokenBatch(
                *(torch.cat([old[source], add], dim=1) for old, add in zip(sequence, new, strict=True))
            )
            logits = model.decode_step(context, sequence, None)[:, -1]

    is_eos = tokens == tokenizer.eos_id
    length = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, tokens.shape[1])  # (B*K,)
    final = scores / length.float() ** config.length_penalty
    best = base.squeeze(1) + final.view(batch_size, beams).argmax(-1)  # (B,)
    return GenerationOutput(tokens[best], length[best], steps[best][..., None])
