"""Every model shape builds, runs forward and backward with finite outputs; generation is exact."""

from __future__ import annotations

import pytest
import torch
from helpers import prompt_batch, text_batch

from modal_tf.core import TransformerConfig
from modal_tf.models import DecoderOnly, EncoderDecoder, EncoderOnly, GenerationConfig, build_model, shift_target
from modal_tf.models.sequence import next_token_loss
from modal_tf.tokenizers import ByteTokenizer, TokenBatch

BYTES = ByteTokenizer()
TEXTS = ["Tom hit Jerry.", "Hi!", "Jerry was chased by Tom."]
PROMPTS = [[257, 84, 111, 109], [257], [257, 74, 101]]  # bos "Tom", bos, bos "Je"


def config(position: str = "rope", **changes: object) -> TransformerConfig:
    return TransformerConfig(dim=32, depth=2, num_heads=4, position=position, max_positions=64, **changes)  # type: ignore[arg-type]


def check_backward(model: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("position", ["none", "sinusoidal", "learned", "rope"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_encoder_only_classifies(position: str, pooling: str) -> None:
    model = EncoderOnly(config(position), {"text": BYTES}, num_classes=3, pooling=pooling)
    logits = model({"text": text_batch(TEXTS)})
    assert logits.shape == (3, 3)
    check_backward(model, logits.logsumexp(-1).mean())


@pytest.mark.parametrize("position", ["none", "sinusoidal", "learned", "rope"])
@pytest.mark.parametrize("shape", ["decoder_only", "encoder_decoder"])
def test_sequence_models_train(position: str, shape: str) -> None:
    model = build_model(shape, config(position, mlp="swiglu", norm="rmsnorm"), {"text": BYTES}, target=BYTES)
    target_input, labels = shift_target(text_batch(TEXTS))
    logits = model({"text": text_batch(TEXTS)}, target_input)
    assert logits.shape == (*labels.shape, BYTES.vocab_size)
    check_backward(model, next_token_loss(logits, labels))


def test_build_model_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        build_model("rnn", config(), {"text": BYTES}, num_classes=2)
    with pytest.raises(ValueError, match="needs a classification task"):
        build_model("timm", config(), {"text": BYTES}, target=BYTES)
    with pytest.raises(ValueError, match="no target tokenizer"):
        build_model("decoder_only", config(), {"text": BYTES}, num_classes=2)


def test_encoder_chunk_predicts_every_slot_in_one_pass() -> None:
    from modal_tf.models import EncoderChunk

    model = build_model("encoder_only", config(), {"text": BYTES}, target=BYTES, num_slots=5)
    assert isinstance(model, EncoderChunk)
    target = text_batch(["ab", "abcdef"])  # content only: slot labels are everything after bos, so wrap first
    wrapped = BYTES.collate([BYTES.encode_target("ab"), BYTES.encode_target("abcdef")])
    labels = model.slot_labels(wrapped)
    assert labels.shape == (2, 5)
    assert labels[0].tolist() == [97, 98, BYTES.eos_id, -100, -100]  # "ab" + eos, then ignored padding
    assert labels[1].tolist() == [97, 98, 99, 100, 101]  # cut to 5 slots
    logits = model({"text": target})
    assert logits.shape == (2, 5, BYTES.vocab_size)
    check_backward(model, torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100))
    out = model.eval().generate({"text": target})
    assert out.tokens.shape == (2, 5) and not torch.isin(out.tokens, torch.tensor([BYTES.pad_id, BYTES.bos_id])).any()


def test_embedder_rejects_out_of_range_ids() -> None:
    model = EncoderOnly(config(), {"text": BYTES}, num_classes=2)
    batch = text_batch(["abc"])
    bad = batch._replace(values=torch.tensor([[1, 2, 999]]))
    with pytest.raises(ValueError, match=r"input 'text': ids must lie in \[0, 259\)"):
        model({"text": bad})
    with pytest.raises(ValueError, match="missing"):
        model({"image": batch})


def favour(model: DecoderOnly | EncoderDecoder, ids: list[int]) -> None:
    """Add +100 to the logits of ``ids`` through a hook on the LM head."""
    boost = torch.zeros(BYTES.vocab_size)
    boost[ids] = 100.0
    model.head.register_forward_hook(lambda module, args, output: output + boost)


def _models() -> dict[str, DecoderOnly | EncoderDecoder]:
    torch.manual_seed(0)
    return {
        "lm": DecoderOnly(config("rope"), BYTES),
        "prefix_lm": DecoderOnly(config("sinusoidal"), BYTES, {"text": BYTES}),
        "encoder_decoder": EncoderDecoder(config("learned"), {"text": BYTES}, BYTES),
    }


def _inputs(name: str) -> dict[str, TokenBatch]:
    return {} if name == "lm" else {"text": text_batch(TEXTS)}


@pytest.mark.parametrize("name", ["lm", "prefix_lm", "encoder_decoder"])
def test_cached_generation_equals_full_recomputation(name: str) -> None:
    model = _models()[name].eval()
    settings = GenerationConfig(max_new_tokens=12, stop_at_eos=False)
    cached = model.generate(_inputs(name), prompt_batch(PROMPTS), settings)
    full = model.generate(
        _inputs(name), prompt_batch(PROMPTS), GenerationConfig(12, stop_at_eos=False, use_cache=False)
    )
    assert torch.equal(cached.tokens, full.tokens)
    finite = torch.isfinite(full.logits)
    assert torch.equal(finite, torch.isfinite(cached.logits))
    torch.testing.assert_close(cached.logits[finite], full.logits[finite], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lm", "prefix_lm", "encoder_decoder"])
def test_batched_unequal_prompts_match_one_at_a_time(name: str) -> None:
    model = _models()[name].eval()
    settings = GenerationConfig(max_new_tokens=8, stop_at_eos=False)
    batched = model.generate(_inputs(name), prompt_batch(PROMPTS), settings)
    for row, prompt in enumerate(PROMPTS):
        inputs = {} if name == "lm" else {"text": text_batch([TEXTS[row]])}
        single = model.generate(inputs, prompt_batch([prompt]), settings)
        assert torch.equal(single.tokens[0], batched.tokens[row])
        torch.testing.assert_close(
            single.logits[0].nan_to_num(neginf=0), batched.logits[row].nan_to_num(neginf=0), atol=1e-4, rtol=1e-4
        )


def test_sampling_never_emits_pad_or_bos_and_respects_top_k() -> None:
    model = _models()["lm"].eval()
    favour(model, [BYTES.pad_id, BYTES.bos_id])  # make the forbidden ids by far the most likely ones
    generator = torch.Generator().manual_seed(0)
    settings = GenerationConfig(max_new_tokens=20, temperature=1.0, top_k=5, stop_at_eos=False)
    out = model.generate({}, prompt_batch(PROMPTS), settings, generator)
    assert not torch.isin(out.tokens, torch.tensor([BYTES.pad_id, BYTES.bos_id])).any()
    allowed = out.logits.topk(5, dim=-1).indices
    assert (allowed == out.tokens[..., None]).any(-1).all()


def test_top_p_keeps_the_nucleus_only() -> None:
    from modal_tf.models.generation import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, GenerationConfig(temperature=1.0, top_p=0.7)))
    assert kept.tolist() == [[True, True, False, False]]


def test_generation_stops_at_eos_and_pads_after() -> None:
    model = _models()["lm"].eval()
    favour(model, [BYTES.eos_id])
    out = model.generate({}, prompt_batch(PROMPTS), GenerationConfig(max_new_tokens=5))
    assert out.tokens[:, 0].eq(BYTES.eos_id).all()
    assert out.lengths.tolist() == [1, 1, 1]
    assert out.tokens.shape[1] == 1  # every row finished, so the loop stopped


def test_generation_config_validation() -> None:
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
