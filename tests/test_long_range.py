"""The long-range match generator: determinism, balance, labels, no leak from one end, bad arguments.

Notation: N samples, L sequence length, K alphabet size.
"""

from __future__ import annotations

import pytest
import torch

from modal_tf.data.long_range import MatchSamples, first_last_match


def test_shapes_dtypes_and_range() -> None:
    samples = first_last_match(count=10, length=7, alphabet=5, seed=3)
    assert isinstance(samples, MatchSamples)
    assert samples.symbols.shape == (10, 7) and samples.labels.shape == (10,)
    assert samples.symbols.dtype == torch.long and samples.labels.dtype == torch.long
    assert int(samples.symbols.min()) >= 0 and int(samples.symbols.max()) < 5
    assert set(samples.labels.tolist()) <= {0, 1}


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    first = first_last_match(64, 32, seed=1)
    torch.manual_seed(123)  # the global RNG must not matter
    again = first_last_match(64, 32, seed=1)
    other = first_last_match(64, 32, seed=2)
    assert torch.equal(first.symbols, again.symbols) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.symbols, other.symbols)


def test_global_rng_is_not_advanced() -> None:
    state = torch.get_rng_state()
    first_last_match(16, 8, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("count", [2, 100, 1001])
def test_exactly_balanced(count: int) -> None:
    labels = first_last_match(count, 16, seed=0).labels
    assert int(labels.sum()) == count // 2


def test_labels_say_whether_first_equals_last() -> None:
    symbols, labels = first_last_match(500, 9, alphabet=3, seed=4)
    assert torch.equal(labels, (symbols[:, 0] == symbols[:, -1]).long())


def test_positive_labels_are_not_in_a_fixed_order() -> None:
    labels = first_last_match(200, 4, seed=0).labels
    assert not torch.equal(labels, labels.sort().values) and not torch.equal(labels, labels.sort().values.flip(0))


def test_one_end_alone_says_nothing() -> None:
    # In both classes the last symbol is uniform over K, and a negative's last symbol takes every
    # other value; otherwise a model could read the label off one end without the long-range pair.
    alphabet, count = 4, 8000
    symbols, labels = first_last_match(count, 5, alphabet=alphabet, seed=7)
    for label in (0, 1):
        last = symbols[labels == label, -1]
        share = torch.bincount(last, minlength=alphabet).float() / last.numel()  # (K,)
        assert torch.allclose(share, torch.full((alphabet,), 1 / alphabet), atol=0.03), (label, share)
    negatives = symbols[labels == 0]
    offsets = (negatives[:, -1] - negatives[:, 0]) % alphabet  # (N0,)
    assert set(offsets.tolist()) == set(range(1, alphabet))


def test_middle_symbols_are_distractors_over_the_whole_alphabet() -> None:
    symbols, _ = first_last_match(200, 50, alphabet=6, seed=0)
    assert set(symbols[:, 1:-1].flatten().tolist()) == set(range(6))


def test_shortest_sequence_has_only_the_pair() -> None:
    symbols, labels = first_last_match(40, 2, alphabet=2, seed=0)
    assert torch.equal(labels, (symbols[:, 0] == symbols[:, 1]).long())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"count": 0, "length": 8}, ValueError, "count must be >= 1, got 0"),
        ({"count": 4, "length": 1}, ValueError, "length must be >= 2, got 1"),
        ({"count": 4, "length": 8, "alphabet": 1}, ValueError, "alphabet must be >= 2, got 1"),
        ({"count": 4, "length": 8, "seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"count": 4.0, "length": 8}, TypeError, "count must be an int, got float"),
        ({"count": 4, "length": True}, TypeError, "length must be an int, got bool"),
        ({"count": 4, "length": 8, "alphabet": "8"}, TypeError, "alphabet must be an int, got str"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        first_last_match(**kwargs)  # type: ignore[arg-type]
