"""Robot action tokenizers: action_bins, action_mulaw, action_fast (bounds, layout, bad input)."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modal_tf.testing import check_tokenizer
from modal_tf.tokenizers.action_mulaw import ActionMuLawTokenizer
from modal_tf.tokenizers.actions import ActionBinsTokenizer, ActionTokenizer
from modal_tf.tokenizers.fast import ActionFastTokenizer, dct_matrix
from modal_tf.tokenizers.registry import create_tokenizer


def reaching_chunks(count: int, steps: int, dims: int, seed: int) -> list[np.ndarray]:
    """Smooth velocity chunks ``(steps, dims)`` of a noisy P-controller moving to a random goal."""
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(count):
        position, goal = rng.uniform(-1, 1, dims), rng.uniform(-1, 1, dims)
        actions = []
        for _ in range(steps):
            action = 0.3 * (goal - position) + rng.normal(0, 0.01, dims)
            position = position + action
            actions.append(action)
        chunks.append(np.array(actions))
    return chunks


CONFIGS: dict[str, tuple[str, dict[str, object]]] = {
    "bins": ("action_bins", {}),
    "mulaw": ("action_mulaw", {}),
    "mulaw_normalized": ("action_mulaw", {"normalize": True}),
    "fast": ("action_fast", {"vocab_size": 256}),
}


def unfitted(kind: str) -> ActionTokenizer:
    """A fresh tokenizer of one kind, built through the registry."""
    name, config = CONFIGS[kind]
    tokenizer = create_tokenizer(name, **config)
    if not isinstance(tokenizer, ActionTokenizer):
        raise TypeError(f"{name} built a {type(tokenizer).__name__}")
    return tokenizer


def fitted(kind: str) -> ActionTokenizer:
    """A tokenizer of one kind fitted on 8-step, 3-dim reaching chunks."""
    tokenizer = unfitted(kind)
    tokenizer.fit(reaching_chunks(40, 8, 3, seed=0))
    return tokenizer


def fitted_fast() -> ActionFastTokenizer:
    """``action_fast`` fitted on 8-step, 3-dim reaching chunks."""
    tokenizer = ActionFastTokenizer()
    tokenizer.fit(reaching_chunks(40, 8, 3, seed=0))
    return tokenizer


KINDS = ["bins", "mulaw", "mulaw_normalized", "fast"]


@pytest.mark.parametrize("kind", KINDS)
def test_conformance_kit(kind: str) -> None:
    tokenizer = unfitted(kind)
    assert tokenizer.requires_fit
    samples: list[object] = [*reaching_chunks(12, 8, 3, seed=1)]
    if kind != "fast":  # unequal chunk lengths where the tokenizer allows them
        samples += reaching_chunks(2, 5, 3, seed=2)
    samples.append(torch.tensor(samples[0], dtype=torch.float32))  # torch input too
    check_tokenizer(tokenizer, samples)


@pytest.mark.parametrize("kind", KINDS)
def test_target_positions_match_encode_coords(kind: str) -> None:
    tokenizer = fitted(kind)
    tokens = tokenizer.encode(reaching_chunks(1, 8, 3, seed=3)[0])
    length = tokens.values.shape[0]
    positions = tokenizer.positions(length + 2)
    assert torch.equal(positions[1 : length + 1], tokens.coords)
    assert torch.equal(tokenizer.encode_target(reaching_chunks(1, 8, 3, seed=3)[0]).coords, positions)
    assert positions[0].tolist() == [0] * len(tokenizer.axes)
    if kind != "fast":  # eos gets the coords of the would-be next token: step 8, dim 0
        assert positions[-1].tolist() == [8, 0]
        assert tokens.coords[:4].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0]]  # step-major


def test_bins_use_exactly_num_bins_and_decode_to_centres() -> None:
    tokenizer = ActionBinsTokenizer(num_bins=256)
    tokenizer.load_fitted_state({"dims": 1, "lows": [-1.0], "highs": [1.0]})
    centres = -1 + (np.arange(256)[:, None] + 0.5) * 2 / 256  # (256, 1): each bin's centre lands in that bin
    assert tokenizer.encode(centres).values.tolist() == list(range(256))  # OpenVLA's digitize: 255 bins
    grid = np.linspace(-1, 1, 4001)[:, None]  # (4001, 1)
    ids = tokenizer.encode(grid).values
    assert ids[0] == 0 and ids[-1] == 255
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (256, 257, 258, 259)
    decoded = tokenizer.decode([tokenizer.bos_id, 0, 128, 255, tokenizer.eos_id, tokenizer.pad_id])
    assert torch.allclose(decoded[:, 0], torch.tensor([-1 + 1 / 256, 1 / 256, 1 - 1 / 256]))


@settings(max_examples=50, deadline=None)
@given(
    num_bins=st.integers(2, 600),
    steps=st.integers(1, 6),
    dims=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    spread=st.floats(1e-3, 1e3),
    offset=st.floats(-100, 100),
    data=st.data(),
)
def test_bins_error_is_at_most_half_a_bin(
    num_bins: int, steps: int, dims: int, seed: int, spread: float, offset: float, data: st.DataObject
) -> None:
    tokenizer = ActionBinsTokenizer(num_bins=num_bins)
    rng = np.random.default_rng(seed)
    tokenizer.fit([rng.normal(offset, spread, (steps, dims)) for _ in range(5)])
    lows, highs = np.asarray(tokenizer.lows), np.asarray(tokenizer.highs)
    fraction = data.draw(hnp.arrays(np.float64, (steps, dims), elements=st.floats(0, 1)))
    chunk = lows + fraction * (highs - lows)  # (S, D) inside the clipping range
    error = np.abs(tokenizer.decode(tokenizer.encode(chunk).values).double().numpy() - chunk)
    bound = (highs - lows) / num_bins / 2 + 1e-6 * (1 + np.maximum(np.abs(lows), np.abs(highs)))
    assert (error <= bound).all()


def test_mulaw_companding_constants_and_clipping() -> None:
    tokenizer = ActionMuLawTokenizer(dims=2)  # dims given: nothing to fit
    assert not tokenizer.requires_fit and tokenizer.vocab_size == 1027
    unit = tokenizer.to_unit(np.array([[0.0, 256.0], [-256.0, 1.0]]))
    assert np.allclose(unit, [[0.0, 1.0], [-1.0, math.log(101) / math.log(25601)]])
    ids = tokenizer.encode(np.array([[1e6, -1e6]])).values  # beyond M: clipped to the end bins
    assert ids.tolist() == [1023, 0]
    assert tokenizer.roundtrip_error(np.array([[1e6, -1e6]]), tokenizer.decode(ids)) <= 2.6  # against clipped x


@settings(max_examples=50, deadline=None)
@given(num_bins=st.integers(2, 2048), dims=st.integers(1, 4), data=st.data())
def test_mulaw_error_bound_in_companded_and_original_space(num_bins: int, dims: int, data: st.DataObject) -> None:
    tokenizer = ActionMuLawTokenizer(num_bins=num_bins, dims=dims)
    steps = data.draw(st.integers(1, 5))
    chunk = data.draw(hnp.arrays(np.float64, (steps, dims), elements=st.floats(-256, 256)))
    decoded = tokenizer.decode(tokenizer.encode(chunk).values).double().numpy()
    companded_error = np.abs(tokenizer.to_unit(decoded) - tokenizer.to_unit(chunk))
    assert (companded_error <= 1 / num_bins + 1e-6).all()
    assert (np.abs(decoded - chunk) <= tokenizer.error_bound(chunk) + 1e-6 * (1 + np.abs(chunk))).all()
    assert tokenizer.error_bound(chunk).max() <= tokenizer.roundtrip_tolerance


def test_mulaw_normalize_learns_stats_and_keeps_small_values_precise() -> None:
    chunks = [chunk * 100 + 50 for chunk in reaching_chunks(20, 8, 3, seed=4)]  # far from Gato's scale
    raw, normalized = ActionMuLawTokenizer(), ActionMuLawTokenizer(normalize=True)
    for tokenizer in (raw, normalized):
        tokenizer.fit(chunks)
    assert set(normalized.fitted_state()) == {"dims", "means", "stds"} and raw.fitted_state() == {"dims": 3}
    errors = [max(t.roundtrip_error(c, t.decode(t.encode(c).values)) for c in chunks) for t in (raw, normalized)]
    assert errors[1] < errors[0]  # z-scoring moves values to where the companding is fine
    with pytest.raises(ValueError, match=r"must have 2 action dims \(dims=\), got 3"):
        ActionMuLawTokenizer(dims=2).fit(chunks)


def test_dct_matrix_is_orthonormal_and_matches_an_fft_reference() -> None:
    steps = 12
    basis = dct_matrix(steps)
    assert np.allclose(basis @ basis.T, np.eye(steps))
    signal = np.random.default_rng(5).normal(size=steps)
    # Makhoul's FFT algorithm for DCT-II, an independent route to the same numbers.
    spectrum = np.fft.fft(np.concatenate([signal[::2], signal[1::2][::-1]]))
    reference = np.real(spectrum * np.exp(-1j * np.pi * np.arange(steps) / (2 * steps))) * math.sqrt(2 / steps)
    reference[0] /= math.sqrt(2)
    assert np.allclose(basis @ signal, reference)


def test_fast_flattens_coefficient_major_and_compresses() -> None:
    tokenizer = fitted_fast()
    assert tokenizer.steps == 8 and tokenizer.dims == 3
    constant = np.tile(np.array([[0.05, -0.05, 0.1]]), (8, 1))  # only coefficient 0 of each dim is non-zero
    coefficients = tokenizer.coefficients(tokenizer.chunk(constant))
    assert (coefficients[:3] != 0).all() and (coefficients[3:] == 0).all()
    chunks = reaching_chunks(20, 8, 3, seed=6)
    lengths = [tokenizer.encode(chunk).values.shape[0] for chunk in chunks]
    assert np.mean(lengths) < 8 * 3 * 0.75  # BPE merges the near-zero high frequencies
    state = json.loads(json.dumps(tokenizer.fitted_state()))
    assert all(isinstance(i, int) for pair in state["merges"] for i in pair)  # ints, not strings
    # the BPE is lossless on the integer symbols: decoding reproduces the rounded coefficients
    decoded = tokenizer.decode(tokenizer.encode(chunks[0]).values)
    expected = tokenizer.basis.T @ (tokenizer.coefficients(chunks[0]).reshape(8, 3) / tokenizer.scale)
    assert np.allclose(decoded.double().numpy(), expected * tokenizer.half + tokenizer.centre, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    steps=st.integers(1, 16),
    dims=st.integers(1, 4),
    scale=st.floats(1, 50),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_fast_error_is_bounded_by_coefficient_rounding(
    steps: int, dims: int, scale: float, seed: int, data: st.DataObject
) -> None:
    tokenizer = ActionFastTokenizer(vocab_size=512, scale=scale)
    rng = np.random.default_rng(seed)
    tokenizer.fit([rng.normal(size=(steps, dims)).cumsum(0) * rng.uniform(0.01, 10) for _ in range(10)])
    lows, highs, half = tokenizer.lows, tokenizer.highs, tokenizer.half
    fraction = data.draw(hnp.arrays(np.float64, (steps, dims), elements=st.floats(0, 1)))
    chunk = lows + fraction * (highs - lows)  # (S, D) inside the clipping range
    decoded = tokenizer.decode(tokenizer.encode(chunk).values).double().numpy()
    error = (decoded - chunk) / half  # (S, D) normalised units
    slack = 1e-6 * (1 + np.maximum(np.abs(lows), np.abs(highs))) / half * math.sqrt(steps)  # float32 output
    assert (np.abs(tokenizer.basis @ error) <= 0.5 / scale + slack).all()  # per coefficient
    assert (np.linalg.norm(error, axis=0) <= math.sqrt(steps) * 0.5 / scale + slack).all()  # L2 per dim


def test_fast_alphabet_covers_extreme_chunks() -> None:
    tokenizer = fitted_fast()
    alternating = np.where(np.arange(8)[:, None] % 2 == 0, 1e3, -1e3) * np.ones((1, 3))  # clipped, high frequency
    for chunk in (alternating, -alternating, np.full((8, 3), 1e3)):
        decoded = tokenizer.decode(tokenizer.encode(chunk).values)
        assert tokenizer.roundtrip_error(chunk, decoded) <= tokenizer.roundtrip_tolerance


def test_fast_unused_ids_are_banned_and_state_survives_pickle() -> None:
    tokenizer = ActionFastTokenizer(vocab_size=1024)
    tokenizer.fit(reaching_chunks(5, 8, 3, seed=7))  # too little data to fill 1021 BPE ids
    unused = set(range(len(tokenizer.symbols), tokenizer.num_content_ids))
    assert unused and unused <= set(tokenizer.non_content_ids)
    with pytest.raises(ValueError, match="not in the fitted BPE vocabulary"):
        tokenizer.decode([min(unused)])
    copy = pickle.loads(pickle.dumps(tokenizer))
    chunk = reaching_chunks(1, 8, 3, seed=8)[0]
    assert torch.equal(copy.encode(chunk).values, tokenizer.encode(chunk).values)


def test_fast_rejects_malformed_ids_instead_of_returning_zeros() -> None:
    tokenizer = fitted_fast()
    ids = tokenizer.encode(reaching_chunks(1, 8, 3, seed=9)[0]).values.tolist()
    with pytest.raises(ValueError, match=r"spell \d+ DCT coefficients, expected steps \* dims = 8 \* 3"):
        tokenizer.decode(ids[:-1])
    with pytest.raises(ValueError, match="spell"):
        tokenizer.decode(ids + ids)
    with pytest.raises(ValueError, match="needs 59 coefficient symbols, more than vocab_size - 3 = 37"):
        ActionFastTokenizer(vocab_size=40).fit(reaching_chunks(3, 8, 3, seed=0))


def bad_state(tokenizer: ActionTokenizer) -> None:
    tokenizer.load_fitted_state({"steps": 8, "dims": 2, "lows": [0.0], "highs": [1.0], "merges": []})


def fit_a_number(tokenizer: ActionTokenizer) -> None:
    tokenizer.fit(3)  # type: ignore[arg-type]


def ids_in_range_but_not_action(tokenizer: ActionTokenizer) -> None:
    tokenizer.decode([tokenizer.bos_id, tokenizer.eos_id])


BAD_INPUT: list[tuple[str, Callable[[ActionTokenizer], object], type[Exception], str]] = [
    ("nan", lambda t: t.encode(np.full((8, 3), np.nan)), ValueError, r"must be finite, got nan at \(step, dim\)"),
    ("inf", lambda t: t.encode(np.full((8, 3), np.inf)), ValueError, "must be finite, got inf"),
    ("dims", lambda t: t.encode(np.zeros((8, 4))), ValueError, r"must have 3 action dims \(as fitted\), got 4"),
    ("rank 1", lambda t: t.encode(np.zeros(3)), ValueError, r"shape \(steps, dims\), got 1-D .*x\[None, :\]"),
    ("rank 3", lambda t: t.encode(np.zeros((1, 8, 3))), ValueError, "got 3-D shape"),
    ("empty", lambda t: t.encode(np.zeros((0, 3))), ValueError, "empty chunk"),
    ("str", lambda t: t.encode("up"), TypeError, "must be an action chunk .* got str"),
    ("none", lambda t: t.encode(None), TypeError, "got NoneType"),
    ("bool", lambda t: t.encode(torch.zeros(8, 3, dtype=torch.bool)), TypeError, "real numbers"),
    ("strings", lambda t: t.encode([["a", "b", "c"]]), TypeError, "numeric array"),
    ("id range", lambda t: t.decode([0, t.vocab_size]), ValueError, r"ids must lie in \[0, \d+\), got \d+"),
    ("id type", lambda t: t.decode(torch.tensor([0.5])), TypeError, "ids must be ints"),
    ("no action", ids_in_range_but_not_action, ValueError, "no action tokens"),
    ("fit empty", lambda t: t.fit([]), ValueError, "at least one action chunk"),
    ("fit dims", lambda t: t.fit([np.zeros((8, 3)), np.zeros((8, 2))]), ValueError, r"samples\[1\] has 2 action dims"),
    ("fit type", fit_a_number, TypeError, "iterable of action chunks"),
    ("state", bad_state, ValueError, "'lows' must be a list of 2 numbers"),
]


@pytest.mark.parametrize("kind", ["bins", "mulaw_normalized", "fast"])
@pytest.mark.parametrize(("case", "call", "error", "message"), BAD_INPUT, ids=[row[0] for row in BAD_INPUT])
def test_bad_input_is_rejected_clearly(
    kind: str, case: str, call: Callable[[ActionTokenizer], object], error: type[Exception], message: str
) -> None:
    if case == "state" and kind == "mulaw_normalized":
        message = "'means' must be a list of 2 numbers"
    with pytest.raises(error, match=message):
        call(fitted(kind))


@pytest.mark.parametrize(
    ("tokenizer", "call"),
    [
        (ActionBinsTokenizer(), lambda t: t.encode(np.zeros((8, 3)))),
        (ActionMuLawTokenizer(normalize=True, dims=3), lambda t: t.encode(np.zeros((8, 3)))),
        (ActionFastTokenizer(), lambda t: t.encode(np.zeros((8, 3)))),
        (ActionFastTokenizer(), lambda t: t.decode([0, 1])),
    ],
)
def test_unfitted_use_says_call_fit_first(
    tokenizer: ActionTokenizer, call: Callable[[ActionTokenizer], object]
) -> None:
    assert tokenizer.requires_fit and tokenizer.fitted_state() == {}
    with pytest.raises(ValueError, match=r"not fitted: call fit\(\) first"):
        call(tokenizer)


def test_chunk_length_and_shape_rules() -> None:
    fast, bins = fitted_fast(), fitted("bins")
    with pytest.raises(ValueError, match=r"must have 8 steps \(the chunk length fit saw\), got 5"):
        fast.encode(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"samples\[1\] has 5 steps, expected 8"):
        ActionFastTokenizer().fit([np.zeros((8, 3)), np.zeros((5, 3))])
    assert bins.decode(bins.encode(np.zeros((5, 3))).values).shape == (5, 3)  # bins take any length
    with pytest.raises(ValueError, match="4 action tokens, not a multiple of the 3 action dims"):
        bins.decode([1, 2, 3, 4])
    chunk = reaching_chunks(1, 8, 3, seed=10)[0]
    same = [chunk, torch.tensor(chunk), chunk.tolist(), torch.tensor(chunk, requires_grad=True)]
    for tokenizer in (fast, bins):
        ids = [tokenizer.encode(raw).values for raw in same]
        assert all(torch.equal(ids[0], other) for other in ids[1:])
        assert tokenizer.decode(ids[0]).dtype == torch.float32


@pytest.mark.parametrize(("kind", "position"), [("bins", "rope"), ("mulaw", "learned"), ("fast", "sinusoidal")])
def test_a_decoder_learns_one_chunk_and_generation_decodes(kind: str, position: str) -> None:
    from modal_tf.core import TransformerConfig
    from modal_tf.models import DecoderOnly, GenerationConfig, next_token_loss, shift_target

    tokenizer = fitted(kind)
    chunk = reaching_chunks(1, 8, 3, seed=11)[0]
    config = TransformerConfig(dim=32, depth=1, num_heads=2, position=position)
    model = DecoderOnly(config, tokenizer)
    target = tokenizer.collate([tokenizer.encode_target(chunk)])
    inputs, labels = shift_target(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = next_token_loss(model({}, inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    prompt = tokenizer.collate([tokenizer.encode_prompt()])
    generation = GenerationConfig(max_new_tokens=target.values.shape[1])
    cached = model.generate({}, prompt, generation).tokens[0]
    uncached = model.generate({}, prompt, GenerationConfig(max_new_tokens=generation.max_new_tokens, use_cache=False))
    assert torch.equal(cached, uncached.tokens[0])
    decoded = tokenizer.decode(cached)
    assert tokenizer.roundtrip_error(chunk, decoded) <= tokenizer.roundtrip_tolerance
