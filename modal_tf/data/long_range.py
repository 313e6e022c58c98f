"""The long-range match task: does the first symbol of a sequence equal the last?

Notation: N samples, L sequence length, K alphabet size.

Every sequence is L symbols drawn uniformly from ``[0, K)``; its label is 1 when
the first symbol equals the last and 0 otherwise. The two classes are balanced
(exactly half each for an even N) and, in a negative, the last symbol is drawn
uniformly from the K - 1 symbols that differ from the first, so the first or the
last symbol alone carries no information: only the pair does, and the pair is
L - 1 positions apart. The L - 2 symbols in between are uniform distractors,
independent of the label (they may repeat the first or the last symbol).

This is the design notes' "global receptive field" claim as a task: one
attention layer can relate slot 0 to slot L - 1 at any L, while a stride-1 CNN
sees only windows as wide as its receptive field.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class MatchSamples(NamedTuple):
    """``symbols`` ``(N, L)`` int64 in ``[0, K)``; ``labels`` ``(N,)`` int64, 1 where first == last."""

    symbols: Tensor
    labels: Tensor


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an int subclass; True as a length is a bug, not a request for 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def first_last_match(count: int, length: int, alphabet: int = 8, seed: int = 0) -> MatchSamples:
    """``count`` balanced sequences of the first-equals-last task, deterministic in ``seed``.

    Args:
        count: Number of sequences N (>= 1). Positives are ``count // 2``.
        length: Symbols per sequence L (>= 2, so the first and last slots differ).
        alphabet: Number of distinct symbols K (>= 2, so a negative exists).
        seed: Seed of a private ``torch.Generator``; the global torch RNG is neither read nor advanced.

    Returns:
        ``MatchSamples`` with ``symbols`` ``(N, L)`` and ``labels`` ``(N,)``, both int64.

    Raises:
        TypeError: An argument is not an int.
        ValueError: An argument is below its minimum.
    """
    count = _check_int("count", count, 1)
    length = _check_int("length", length, 2)
    alphabet = _check_int("alphabet", alphabet, 2)
    seed = _check_int("seed", seed, 0)
    generator = torch.Generator().manual_seed(seed)
    symbols = torch.randint(0, alphabet, (count, length), generator=generator)  # (N, L)
    # A random permutation's first half marks the positives: exact balance, random order.
    labels = (torch.randperm(count, generator=generator) < count // 2).long()  # (N,)
    # A non-zero offset mod K is uniform over the K - 1 other symbols, so a negative's last
    # symbol is as uniform as a positive's and reveals nothing without the first.
    offset = torch.randint(1, alphabet, (count,), generator=generator)  # (N,)
    first = symbols[:, 0]  # (N,)
    symbols[:, -1] = torch.where(labels.bool(), first, (first + offset) % alphabet)
    return MatchSamples(symbols, labels)
