"""Robot action chunk tokenizers: a shared base and per-dimension bins (RT-2/OpenVLA); mu-law bins in ``action_mulaw``.

Notation: S steps in a chunk, D action dims, T = S * D tokens, N num_bins, A = 2 axes (step, dim).

Raw sample: one action chunk, a float array of shape ``(S, D)`` (numpy array, torch tensor or
nested list). A single step must be passed as ``(1, D)``: a 1-D array is rejected rather than
guessed at, because ``(D,)`` and ``(S,)`` for a 1-dim action are indistinguishable. ``decode``
returns a float32 tensor ``(S, D)``. Ids are ints end to end, never strings.

The scalar quantisers (bins here, mu-law in ``action_mulaw``) map each value to a "unit" space
``[-1, 1]`` (clipping there is the one deliberate loss), cut it into N equal-width bins, and decode
to bin centres. Ids: bins ``0..N-1``, then pad ``N``, bos ``N + 1``, eos ``N + 2``. Tokens are
step-major (all dims of step 0, then step 1, ...), with coordinates ``(step, dim)``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modal_tf.tokenizers.base import DiscreteTokenizer, Tokens
from modal_tf.tokenizers.registry import register_tokenizer

PERCENTILES = (1.0, 99.0)  # OpenVLA and FAST map the 1st/99th percentile per dim to -1/+1
MIN_HALF_RANGE = 1e-6  # a constant training dim still gets a usable (tiny) range instead of 0/0
FLOAT_SLACK = 1e-6  # relative slack for float64 arithmetic and the float32 output of decode


def as_chunk(raw: Any, argument: str = "raw") -> np.ndarray:
    """Validate one action chunk and return it as float64 ``(S, D)``.

    Raises:
        TypeError: ``raw`` is not a numeric array, tensor or nested list.
        ValueError: wrong rank, an empty chunk, or NaN/inf values.
    """
    if isinstance(raw, Tensor):
        if raw.dtype == torch.bool or raw.is_complex():
            raise TypeError(f"{argument} must hold real numbers, got a tensor of {raw.dtype}")
        array = raw.detach().to("cpu", torch.float64).numpy()
    elif isinstance(raw, np.ndarray | list | tuple):
        try:
            array = np.asarray(raw)
            if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
                raise TypeError(f"dtype {array.dtype}")
            if np.iscomplexobj(array):
                raise TypeError("complex values")
            array = array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{argument} must be a numeric array of shape (steps, dims), got {error}") from None
    else:
        raise TypeError(
            f"{argument} must be an action chunk (numpy array, torch tensor or nested list) of shape "
            f"(steps, dims), got {type(raw).__name__}"
        )
    if array.ndim != 2:
        hint = "; pass a single step as x[None, :]" if array.ndim == 1 else ""
        raise ValueError(f"{argument} must have shape (steps, dims), got {array.ndim}-D shape {array.shape}{hint}")
    if array.size == 0:
        raise ValueError(f"{argument} is an empty chunk of shape {array.shape}; need at least 1 step and 1 dim")
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{argument} must be finite, got {array[tuple(bad)]} at (step, dim) = {tuple(bad)}")
    return array


def percentile_range(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim 1st/99th percentiles of ``(S_total, D)`` values: ``lows``, ``highs``, each ``(D,)``."""
    lows, highs = np.percentile(stacked, PERCENTILES, axis=0)  # (2, D) -> two (D,)
    return lows, highs


def range_centre_half(lows: np.ndarray, highs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affine map of ``[low, high]`` onto ``[-1, 1]``: ``unit = (x - centre) / half``, both ``(D,)``."""
    return (highs + lows) / 2, np.maximum((highs - lows) / 2, MIN_HALF_RANGE)


def positive_int(state: dict[str, Any], key: str) -> int:
    """Read ``state[key]`` as a positive int, with a clear error."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"fitted state {key!r} must be a positive int, got {value!r}")
    return value


def float_list(state: dict[str, Any], key: str, dims: int) -> np.ndarray:
    """Read ``state[key]`` as ``dims`` finite floats, with a clear error."""
    values = state.get(key)
    if not isinstance(values, list) or len(values) != dims or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"fitted state {key!r} must be a list of {dims} numbers, got {values!r:.200}")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"fitted state {key!r} must be finite, got {values!r:.200}")
    return array


class ActionTokenizer(DiscreteTokenizer):
    """Shared plumbing of action tokenizers: chunk validation, fitted dims, specials after the content ids.

    Subclasses set ``num_content_ids`` (ids ``0..n-1``; pad, bos, eos follow), implement
    ``fit_chunks``, ``encode``, ``decode`` and ``clipped`` (the chunk after deliberate clipping).
    """

    def __init__(self) -> None:
        self.dims: int | None = None

    @property
    @abstractmethod
    def num_content_ids(self) -> int:
        """Number of action ids; they come first, the specials after them."""

    @property
    def vocab_size(self) -> int:
        """Action ids plus pad, bos, eos."""
        return self.num_content_ids + 3

    @property
    def pad_id(self) -> int:
        """First id after the action ids."""
        return self.num_content_ids

    @property
    def bos_id(self) -> int:
        """Beginning of sequence."""
        return self.num_content_ids + 1

    @property
    def eos_id(self) -> int:
        """End of sequence."""
        return self.num_content_ids + 2

    def fit(self, samples: Iterable[Any]) -> None:
        """Learn from training chunks (each ``(S, D)``, D shared); see the subclass for what is learned."""
        if isinstance(samples, str | bytes) or not isinstance(samples, Iterable):
            raise TypeError(f"fit expects an iterable of action chunks, got {type(samples).__name__}")
        chunks = [as_chunk(chunk, f"samples[{index}]") for index, chunk in enumerate(samples)]
        if not chunks:
            raise ValueError("fit needs at least one action chunk, got none")
        dims = chunks[0].shape[1]
        for index, chunk in enumerate(chunks):
            if chunk.shape[1] != dims:
                raise ValueError(f"samples[{index}] has {chunk.shape[1]} action dims, expected {dims} like samples[0]")
        self.fit_chunks(chunks)

    @abstractmethod
    def fit_chunks(self, chunks: list[np.ndarray]) -> None:
        """Learn from validated float64 chunks ``(S_i, D)`` sharing D."""

    def chunk(self, raw: Any, argument: str = "raw") -> np.ndarray:
        """Validate ``raw`` against the fitted dims; float64 ``(S, D)``."""
        if self.requires_fit or self.dims is None:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit() first")
        array = as_chunk(raw, argument)
        if array.shape[1] != self.dims:
            raise ValueError(f"{argument} must have {self.dims} action dims (as fitted), got {array.shape[1]}")
        return array

    def content_ids(self, ids: Sequence[int] | Tensor) -> np.ndarray:
        """Validated ids with specials dropped, int64 ``(T,)``; an empty result raises ``ValueError``."""
        if self.requires_fit:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit() first")
        values = np.asarray(self.check_ids(ids), dtype=np.int64)
        content = values[values < self.num_content_ids]  # pad/bos/eos follow the content ids
        if content.size == 0:
            raise ValueError("ids hold no action tokens (only specials or nothing); cannot decode an empty chunk")
        return content

    @abstractmethod
    def clipped(self, chunk: np.ndarray) -> np.ndarray:
        """``(S, D)`` chunk after this tokenizer's deliberate clipping, in original units."""

    def roundtrip_error(self, raw: Any, decoded: Any) -> float:
        """Max abs error between the clipped ``raw`` chunk and ``decoded``, in original units.

        Clipping to the fitted range is a declared loss, measured separately from quantisation:
        the bounds this tokenizer promises hold against ``clipped(raw)``. Shape mismatch gives inf.
        """
        expected = self.clipped(self.chunk(raw))
        actual = as_chunk(decoded, "decoded")
        if actual.shape != expected.shape:
            return math.inf
        return float(np.abs(expected - actual).max())


class BinnedActionTokenizer(ActionTokenizer):
    """Scalar quantiser base: each value -> unit space -> one of ``num_bins`` bins; axes ``(step, dim)``.

    Subclasses implement ``to_unit`` / ``from_unit`` (the invertible map into ``[-1, 1]``).
    """

    axes = ("step", "dim")

    def __init__(self, num_bins: int) -> None:
        super().__init__()
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}")
        self.num_bins = num_bins

    @property
    def num_content_ids(self) -> int:
        """One id per bin."""
        return self.num_bins

    @abstractmethod
    def to_unit(self, chunk: np.ndarray) -> np.ndarray:
        """``(S, D)`` original units -> unit space (not yet clipped)."""

    @abstractmethod
    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """``(S, D)`` unit space -> original units."""

    def bin_centres(self, bins: np.ndarray) -> np.ndarray:
        """Unit-space centres of bin indices (any shape)."""
        return (bins + 0.5) * (2.0 / self.num_bins) - 1.0

    def encode(self, raw: Any) -> Tokens:
        """Chunk ``(S, D)`` -> ids ``(S * D,)`` step-major, coords ``(S * D, 2)`` = (step, dim)."""
        chunk = self.chunk(raw)
        unit = np.clip(self.to_unit(chunk), -1.0, 1.0)
        # N equal-width bins over [-1, 1]; the clamp puts x = +1 into the last bin. OpenVLA's
        # np.digitize over linspace(-1, 1, 256) edges leaves only 255 usable bins; this does not.
        bins = np.clip(np.floor((unit + 1.0) / 2.0 * self.num_bins), 0, self.num_bins - 1).astype(np.int64)
        steps, dims = chunk.shape
        coords = np.stack(np.meshgrid(np.arange(steps), np.arange(dims), indexing="ij"), -1)  # (S, D, 2)
        return Tokens(torch.from_numpy(bins.reshape(-1)), torch.from_numpy(coords.reshape(-1, 2)))  # (T,), (T, 2)

    def decode(self, ids: Sequence[int] | Tensor) -> Tensor:
        """Ids -> float32 chunk ``(S, D)`` at bin centres; specials dropped; count must be a multiple of D."""
        content = self.content_ids(ids)
        dims = self.dims or 1
        if content.size % dims:
            raise ValueError(f"ids hold {content.size} action tokens, not a multiple of the {dims} action dims")
        unit = self.bin_centres(content.reshape(-1, dims))  # (T,) -> (S, D)
        return torch.from_numpy(self.from_unit(unit)).float()

    def clipped(self, chunk: np.ndarray) -> np.ndarray:
        """The chunk with its unit-space values clipped to ``[-1, 1]``."""
        return self.from_unit(np.clip(self.to_unit(chunk), -1.0, 1.0))

    def positions(self, length: int) -> Tensor:
        """(step, dim) of target slots ``bos a_0 .. a_{T-1} eos``: slot s >= 1 holds token s - 1.

        bos shares token 0's coords; eos gets those of the token that would come next.
        """
        dims = self.dims or 1
        token = (torch.arange(length) - 1).clamp(min=0)  # (length,)
        return torch.stack([token // dims, token % dims], dim=-1)  # (length, 2)


@register_tokenizer("action_bins")
class ActionBinsTokenizer(BinnedActionTokenizer):
    """RT-2/OpenVLA action bins: per-dim 1st/99th percentile range -> ``num_bins`` equal bins.

    Brohan et al. 2023 https://arxiv.org/abs/2307.15818, Kim et al. 2024 https://arxiv.org/abs/2406.09246.
    ``fit`` learns per-dim ``lows``/``highs`` (percentiles 1 and 99) and ``dims``. Error bound inside
    ``[low, high]``: ``|x - decode(encode(x))| <= (high - low) / num_bins / 2`` per dim.

    Args:
        num_bins: Bins per value (ids ``0..num_bins-1``; pad/bos/eos follow).
    """

    def __init__(self, num_bins: int = 256) -> None:
        super().__init__(num_bins)
        self.lows: np.ndarray | None = None
        self.highs: np.ndarray | None = None
        self.centre = self.half = np.zeros(0)  # (D,) each, set with the range

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"num_bins": self.num_bins}

    @property
    def requires_fit(self) -> bool:
        """True until ``fit`` (or ``load_fitted_state``) supplies the ranges."""
        return self.lows is None

    def fit_chunks(self, chunks: list[np.ndarray]) -> None:
        """Per-dim percentile range of all training steps."""
        self.set_range(*percentile_range(np.concatenate(chunks)))  # (S_total, D)

    def set_range(self, lows: np.ndarray, highs: np.ndarray) -> None:
        """Install fitted ranges ``(D,)`` and the matching round-trip tolerance."""
        self.lows, self.highs, self.dims = lows, highs, int(lows.shape[0])
        self.centre, self.half = range_centre_half(lows, highs)
        span = float(np.abs(np.concatenate([lows, highs])).max())
        self.roundtrip_tolerance = float(self.half.max()) / self.num_bins + FLOAT_SLACK * (1.0 + span)

    def fitted_state(self) -> dict[str, Any]:
        """``dims`` and per-dim ``lows``/``highs``; empty when unfitted."""
        if self.lows is None or self.highs is None:
            return {}
        return {"dims": self.dims, "lows": self.lows.tolist(), "highs": self.highs.tolist()}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore ``fitted_state()`` output (an empty dict leaves the tokenizer unfitted)."""
        if not state:
            return
        dims = positive_int(state, "dims")
        lows, highs = float_list(state, "lows", dims), float_list(state, "highs", dims)
        if (highs < lows).any():
            raise ValueError(f"fitted state needs highs >= lows per dim, got lows {lows} highs {highs}")
        self.set_range(lows, highs)

    def to_unit(self, chunk: np.ndarray) -> np.ndarray:
        """Affine map of the fitted range onto ``[-1, 1]``."""
        return (chunk - self.centre) / self.half

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Inverse of ``to_unit``."""
        return unit * self.half + self.centre
