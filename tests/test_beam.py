"""Beam search against exhaustive search on a tiny vocabulary."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from modal_tf.core import TransformerConfig
from modal_tf.models import DecoderOnly, EncoderDecoder, GenerationConfig, shift_target
from modal_tf.tokenizers import ByteTokenizer, DiscreteTokenizer, TokenBatch, Tokens, register_tokenizer


@register_tokenizer("test_tiny_vocab")
class TinyVocab(DiscreteTokenizer):
    """Ids 0-2 are content; 3 pad, 4 bos, 5 eos."""

    vocab_size, pad_id, bos_id, eos_id = 6, 3, 4, 5  # type: ignore[assignment]

    def encode(self, raw: Any) -> Tokens:
        ids = torch.tensor(list(raw), dtype=torch.long)
        return Tokens(ids, torch.arange(ids.shape[0])[:, None])

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[int]:
        return [value for value in self.check_ids(ids) if value < 3]

    def config(self) -> dict[str, Any]:
        return {}


TINY = TinyVocab()
STEPS = 3


def sequence_score(model: DecoderOnly | EncoderDecoder, inputs: dict[str, TokenBatch], ids: list[int]) -> float:
    """Teacher-forced log-probability of ``ids`` after bos (pad/bos banned, like generation)."""
    target = TINY.collate([Tokens(torch.tensor([TINY.bos_id, *ids]), torch.arange(len(ids) + 1)[:, None])])
    decoder_input, labels = shift_target(target)
    with torch.no_grad():
        logits = model(inputs, decoder_input)[0]
    logits[:, [TINY.pad_id, TINY.bos_id]] = float("-inf")
    return float(logits.log_softmax(-1).gather(-1, labels[0][:, None]).sum())


def exhaustive_best(model: DecoderOnly | EncoderDecoder, inputs: dict[str, TokenBatch]) -> tuple[list[int], float]:
    """Best sequence of at most STEPS tokens, ending at EOS or at the length limit."""
    candidates = set()
    for ids in itertools.product([0, 1, 2, TINY.eos_id], repeat=STEPS):
        cut = list(ids[: ids.index(TINY.eos_id) + 1]) if TINY.eos_id in ids else list(ids)
        candidates.add(tuple(cut))
    scored = [(sequence_score(model, inputs, list(ids)), list(ids)) for ids in candidates]
    score, best = max(scored)
    return best, score


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", ["decoder_only", "encoder_decoder"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_wide_beam_finds_the_exhaustive_optimum(seed: int, shape: str, use_cache: bool) -> None:
    torch.manual_seed(seed)
    config = TransformerConfig(dim=16, depth=1, num_heads=2, position="rope")
    source = ByteTokenizer()
    model = (
        DecoderOnly(config, TINY) if shape == "decoder_only" else EncoderDecoder(config, {"text": source}, TINY)
    ).eval()
    with torch.no_grad():  # x2: random models where greedy misses the optimum (see the test below)
        for parameter in model.parameters():
            parameter.mul_(2.0)
    inputs = {} if shape == "decoder_only" else {"text": source.collate([source.encode("abc")])}
    best, best_score = exhaustive_best(model, inputs)
    prompt = TINY.collate([TINY.encode_prompt()])
    settings = GenerationConfig(max_new_tokens=STEPS, num_beams=16, use_cache=use_cache)  # 16 = 4 ** (STEPS - 1)
    out = model.generate(inputs, prompt, settings)
    found = out.tokens[0, : out.lengths[0]].tolist()
    assert found == best
    assert out.logits[0, : out.lengths[0], 0].sum().item() == pytest.approx(best_score, abs=1e-4)


def test_greedy_misses_the_optimum_so_the_beam_test_has_teeth() -> None:
    misses = 0
    for seed in range(4):
        torch.manual_seed(seed)
        model = DecoderOnly(TransformerConfig(dim=16, depth=1, num_heads=2, position="rope"), TINY).eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(2.0)
        best, _ = exhaustive_best(model, {})
        out = model.generate({}, TINY.collate([TINY.encode_prompt()]), GenerationConfig(max_new_tokens=STEPS))
        misses += out.tokens[0, : out.lengths[0]].tolist() != best
    assert misses >= 1


def test_one_beam_is_greedy() -> None:
    torch.manual_seed(0)
    model = DecoderOnly(TransformerConfig(dim=16, depth=1, num_heads=2), ByteTokenizer()).eval()
    prompt = ByteTokenizer().collate([ByteTokenizer().encode_prompt("ab"), ByteTokenizer().encode_prompt("c")])
    greedy = model.generate({}, prompt, GenerationConfig(max_new_tokens=6))
    beam = model.generate({}, prompt, GenerationConfig(max_new_tokens=6, num_beams=2))
    single = model.generate({}, prompt, GenerationConfig(max_new_tokens=6, num_beams=1))
    assert torch.equal(greedy.tokens, single.tokens)
    assert beam.tokens.shape[0] == 2


def test_beam_search_rejects_sampling() -> None:
    with pytest.raises(ValueError, match="beam search is deterministic"):
        GenerationConfig(num_beams=4, temperature=0.7)
