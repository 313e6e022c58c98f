"""FAST action tokenizer: percentile normalisation, DCT over time, rounding, BPE over integer symbols.

Notation: S steps per chunk (fixed at fit), D action dims, C = S * D DCT coefficients per chunk,
K alphabet radius (coefficients lie in ``[-K, K]``), T BPE tokens per chunk (data dependent).

Pertsch et al. 2025 https://arxiv.org/abs/2501.09747. Per chunk: map each dim's 1st/99th
training percentiles to -1/+1 and clip; orthonormal DCT-II along time per dim; multiply by
``scale`` and round to ints; flatten coefficient-major (all dims' coefficient 0, then
coefficient 1, ...), so the near-zero high frequencies form long runs; compress with BPE.

Ints end to end: a coefficient ``q`` becomes the symbol ``q + K`` in ``[0, 2K]``; only to call
Hugging Face ``tokenizers`` (whose BPE works on ``str``) is symbol ``s`` spelled as the code point
``0x4E00 + s`` (CJK ideographs: letters, no whitespace, nothing a normaliser touches). Ids are
ours: symbols ``0..2K`` are ids ``0..2K`` and merge ``i`` yields the next new id, so the fitted
state stores the merges as int pairs. Decoding maps ids to symbols through an int table, never
through text. Clipping bounds ``|coefficient| <= sqrt(S)`` (an orthonormal DCT row has L1 norm
at most ``sqrt(S)``), so the alphabet covers every input: HF BPE would otherwise drop unknown
characters silently.

The axis is ``("time",)``: a BPE token spans a variable run of coefficients, and each
coefficient mixes all steps of one dim, so tokens align with neither steps nor dims.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, trainers
from torch import Tensor

from modal_tf.tokenizers.actions import (
    FLOAT_SLACK,
    ActionTokenizer,
    float_list,
    percentile_range,
    positive_int,
    range_centre_half,
)
from modal_tf.tokenizers.base import Tokens
from modal_tf.tokenizers.registry import register_tokenizer

FIRST_CODE_POINT = 0x4E00  # start of CJK Unified Ideographs (20,992 letters up to U+9FFF)
MAX_SYMBOLS = 0x9FFF - FIRST_CODE_POINT + 1
MIN_PAIR_COUNT = 2  # a pair seen once is noise, not a pattern worth a vocabulary slot


def spell(symbols: Sequence[int] | np.ndarray) -> str:
    """Symbols ``(C,)`` in ``[0, 2K]`` -> one code point each; used only as HF BPE input and vocabulary."""
    code_points = np.asarray(symbols, dtype=np.int64) + FIRST_CODE_POINT  # (C,)
    return code_points.astype("<u4").tobytes().decode("utf-32-le")


def dct_matrix(steps: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(S, S)``: ``coefficients = M @ x`` along time, ``x = M.T @ coefficients``."""
    frequency = np.arange(steps)[:, None]  # (S, 1)
    time = np.arange(steps)[None, :] + 0.5  # (1, S)
    matrix = np.cos(np.pi * frequency * time / steps) * math.sqrt(2.0 / steps)  # (S, S)
    matrix[0] /= math.sqrt(2.0)  # the DC row has weight sqrt(1/S) for orthonormality
    return matrix


@register_tokenizer("action_fast")
class ActionFastTokenizer(ActionTokenizer):
    """FAST: DCT + BPE compression of action chunks of a fixed length, fitted on training chunks.

    ``fit`` learns ``steps``, ``dims``, per-dim percentile ``lows``/``highs`` and the BPE merges.
    Error bound inside ``[low, high]``: each coefficient is off by at most ``0.5 / scale``, so with
    the orthonormal DCT the L2 error over the chunk per dim is at most ``sqrt(S) * 0.5 / scale`` in
    normalised units (times ``(high - low) / 2`` in original units); the same bounds each value.

    Args:
        vocab_size: Total ids including pad/bos/eos (BPE ids ``0..vocab_size-4``); BPE learns at most
            that many tokens; ids it did not fill are never generated and do not decode.
        scale: Multiplier applied to DCT coefficients before rounding (larger: finer, more tokens).
    """

    axes = ("time",)

    def __init__(self, vocab_size: int = 1024, scale: float = 10.0) -> None:
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 4:
            raise ValueError(f"vocab_size must be an int >= 4 (3 specials + 1), got {vocab_size!r}")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < math.inf:
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.total_ids, self.scale = vocab_size, float(scale)
        self.steps: int | None = None
        self.lows = self.highs = self.centre = self.half = np.zeros(0)  # (D,) each once fitted
        self.merges: list[tuple[int, int]] = []
        self.radius = 0  # K
        self.symbols: list[tuple[int, ...]] = []  # BPE id -> its symbols (ints), the decode table
        self.lengths = np.zeros(0, dtype=np.int64)  # BPE id -> number of coefficients it spells
        self.basis = np.zeros((0, 0))  # (S, S) DCT matrix once fitted
        self.bpe: HFTokenizer | None = None

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"vocab_size": self.total_ids, "scale": self.scale}

    @property
    def num_content_ids(self) -> int:
        """BPE ids; fixed by ``vocab_size`` so the embedding table does not depend on the data."""
        return self.total_ids - 3

    @property
    def requires_fit(self) -> bool:
        """True until ``fit`` (or ``load_fitted_state``) learns the ranges and merges."""
        return self.bpe is None

    @property
    def non_content_ids(self) -> tuple[int, ...]:
        """pad, bos and the BPE ids the fit left unused (they would not decode)."""
        return (self.pad_id, self.bos_id, *range(len(self.symbols), self.num_content_ids))

    def fit_chunks(self, chunks: list[np.ndarray]) -> None:
        """Learn ranges from all steps, then BPE merges from the chunks' coefficient symbols."""
        steps = chunks[0].shape[0]
        for index, chunk in enumerate(chunks):
            if chunk.shape[0] != steps:
                raise ValueError(f"samples[{index}] has {chunk.shape[0]} steps, expected {steps} like samples[0]")
        self.setup(steps, *percentile_range(np.concatenate(chunks)), merges=[])  # (S_total, D)
        alphabet = [chr(FIRST_CODE_POINT + symbol) for symbol in range(2 * self.radius + 1)]
        trainer = trainers.BpeTrainer(
            vocab_size=self.num_content_ids,
            min_frequency=MIN_PAIR_COUNT,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=alphabet,
        )
        learner = HFTokenizer(models.BPE())
        learner.train_from_iterator(
            [spell(self.coefficients(chunk) + self.radius) for chunk in chunks], trainer=trainer
        )
        # Renumber the learned merges into our ids (alphabet first, then one id per new string).
        # Older tokenizers releases serialise a merge as "a b", newer ones as ["a", "b"].
        ids = {letter: index for index, letter in enumerate(alphabet)}
        merges = []
        for pair in json.loads(learner.to_str())["model"]["merges"]:
            left, right = pair.split(" ") if isinstance(pair, str) else pair
            merges.append((ids[left], ids[right]))
            ids.setdefault(left + right, len(ids))
        self.setup(steps, self.lows, self.highs, merges)

    def setup(self, steps: int, lows: np.ndarray, highs: np.ndarray, merges: list[tuple[int, int]]) -> None:
        """Install fitted state; build the decode table and the HF BPE model from int ``merges``."""
        radius = math.ceil(self.scale * math.sqrt(steps))  # K: |round(scale * c)| <= scale * sqrt(S)
        needed = f"steps={steps} with scale={self.scale} needs {2 * radius + 1} coefficient symbols"
        if 2 * radius + 1 > MAX_SYMBOLS:
            raise ValueError(f"{needed}, more than the {MAX_SYMBOLS} code points that spell them; lower scale")
        if 2 * radius + 1 > self.num_content_ids:
            raise ValueError(
                f"{needed}, more than vocab_size - 3 = {self.num_content_ids}; raise vocab_size or lower scale"
            )
        symbols: list[tuple[int, ...]] = [(symbol,) for symbol in range(2 * radius + 1)]
        strings = {spell(symbol): index for index, symbol in enumerate(symbols)}
        pairs = []
        for index, (left, right) in enumerate(merges):
            if not (0 <= left < len(symbols) and 0 <= right < len(symbols)):
                raise ValueError(f"merge {index} = ({left}, {right}) refers to ids not defined before it")
            pairs.append((spell(symbols[left]), spell(symbols[right])))
            merged = symbols[left] + symbols[right]
            if spell(merged) not in strings:  # two merges may spell the same token; it keeps its first id
                strings[spell(merged)] = len(symbols)
                symbols.append(merged)
        if len(symbols) > self.num_content_ids:
            raise ValueError(f"merges define {len(symbols)} ids, more than vocab_size - 3 = {self.num_content_ids}")
        self.steps, self.dims, self.radius = steps, int(lows.shape[0]), radius
        self.lows, self.highs, self.merges, self.symbols = lows, highs, list(merges), symbols
        self.lengths = np.array([len(symbol) for symbol in symbols])  # (ids,) coefficients per BPE id
        self.centre, self.half = range_centre_half(lows, highs)
        self.basis = dct_matrix(steps)  # (S, S)
        self.bpe = HFTokenizer(models.BPE(vocab=strings, merges=pairs))
        span = float(np.abs(np.concatenate([lows, highs])).max())
        self.roundtrip_tolerance = math.sqrt(steps) * 0.5 / self.scale * float(self.half.max()) + FLOAT_SLACK * (
            1.0 + span
        )

    def coefficients(self, chunk: np.ndarray) -> np.ndarray:
        """Validated float64 chunk ``(S, D)`` -> rounded DCT coefficients, int64 ``(C,)`` coefficient-major."""
        unit = np.clip((chunk - self.centre) / self.half, -1.0, 1.0)  # (S, D)
        scaled = np.rint(self.basis @ unit * self.scale)  # (S, D): row k = coefficient k of every dim
        # Clipping already bounds |scaled| <= K; the clip only guards against float round-off.
        return np.clip(scaled, -self.radius, self.radius).astype(np.int64).reshape(-1)  # (S, D) -> (C,)

    def chunk(self, raw: Any, argument: str = "raw") -> np.ndarray:
        """Validate ``raw`` against the fitted dims and chunk length; float64 ``(S, D)``."""
        array = super().chunk(raw, argument)
        if array.shape[0] != self.steps:
            raise ValueError(
                f"{argument} must have {self.steps} steps (the chunk length fit saw), got {array.shape[0]}"
            )
        return array

    def encode(self, raw: Any) -> Tokens:
        """Chunk ``(S, D)`` -> BPE ids ``(T,)`` with coords ``(T, 1)`` = token index."""
        coefficients = self.coefficients(self.chunk(raw))
        if self.bpe is None:  # unreachable after chunk(); narrows the type
            raise ValueError(f"{type(self).__name__} is not fitted: call fit() first")
        ids = self.bpe.encode(spell(coefficients + self.radius)).ids
        covered = int(self.lengths[ids].sum())
        if covered != coefficients.size:  # HF BPE drops characters it does not know, silently
            raise RuntimeError(f"BPE covered {covered} of {coefficients.size} coefficients; the alphabet is incomplete")
        values = torch.tensor(ids, dtype=torch.long)
        return Tokens(values, torch.arange(values.shape[0])[:, None])

    def decode(self, ids: Sequence[int] | Tensor) -> Tensor:
        """BPE ids -> float32 chunk ``(S, D)``; specials dropped.

        Raises:
            ValueError: an id the fit left unused, or ids spelling other than ``S * D`` coefficients.
        """
        content = self.content_ids(ids)
        unused = content[content >= len(self.symbols)]
        if unused.size:
            raise ValueError(
                f"id {int(unused[0])} is not in the fitted BPE vocabulary (ids 0..{len(self.symbols) - 1})"
            )
        symbols = [symbol for index in content.tolist() for symbol in self.symbols[index]]
        if self.steps is None or self.dims is None or len(symbols) != self.steps * self.dims:
            raise ValueError(
                f"ids spell {len(symbols)} DCT coefficients, expected steps * dims = {self.steps} * {self.dims}"
            )
        coefficients = (np.asarray(symbols, dtype=np.float64) - self.radius) / self.scale
        unit = self.basis.T @ coefficients.reshape(self.steps, self.dims)  # (C,) -> (S, D) -> inverse DCT
        return torch.from_numpy(unit * self.half + self.centre).float()

    def clipped(self, chunk: np.ndarray) -> np.ndarray:
        """The chunk clipped to the fitted per-dim ``[low, high]``."""
        return np.clip((chunk - self.centre) / self.half, -1.0, 1.0) * self.half + self.centre

    def positions(self, length: int) -> Tensor:
        """Target slots ``bos t_0 .. t_{T-1} eos``: slot s >= 1 gets index s - 1, as ``encode`` gives; bos gets 0."""
        return (torch.arange(length) - 1).clamp(min=0)[:, None]  # (length, 1)

    def fitted_state(self) -> dict[str, Any]:
        """``steps``, ``dims``, ``lows``, ``highs`` and the BPE ``merges`` as int id pairs; empty when unfitted."""
        if self.requires_fit:
            return {}
        return {
            "steps": self.steps,
            "dims": self.dims,
            "lows": self.lows.tolist(),
            "highs": self.highs.tolist(),
            "merges": [list(pair) for pair in self.merges],
        }

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore ``fitted_state()`` output (an empty dict leaves the tokenizer unfitted)."""
        if not state:
            return
        steps, dims, merges = positive_int(state, "steps"), positive_int(state, "dims"), state.get("merges")
        if not isinstance(merges, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) for i in pair) for pair in merges
        ):
            raise ValueError(f"fitted state 'merges' must be a list of [int, int] pairs, got {merges!r:.200}")
        lows, highs = float_list(state, "lows", dims), float_list(state, "highs", dims)
        self.setup(steps, lows, highs, [(left, right) for left, right in merges])

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the HF object; ``__setstate__`` rebuilds it from the int merges."""
        state = self.__dict__.copy()
        state["bpe"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore and rebuild the BPE model when fitted."""
        self.__dict__.update(state)
        if self.steps is not None:
            self.setup(self.steps, self.lows, self.highs, self.merges)
