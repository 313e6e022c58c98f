"""SpecAugment: seeded frequency and time masking of a log-mel spectrogram, for training only.

Notation: N spectrogram frames, M mel bins, K masks of one kind.

Park et al. 2019 (https://arxiv.org/abs/1904.08779, §2) mask ``num_freq_masks``
bands of f ~ U{0..F} consecutive mel bins and ``num_time_masks`` spans of
t ~ U{0..T} consecutive frames, with t also capped at ``max_time_ratio * N``
so short clips keep most of their frames; band starts are uniform over the
positions where the band fits. Masked cells get the spectrogram's mean: Park
et al. set them to zero after normalising each clip to zero mean, which is the
same thing. Time warping, the paper's third (and least useful) ingredient, is
left out. The default policy is their "LibriSpeech double" (LD): F=27, 2 bands,
T=100, 2 spans, p=0.2, tuned for 80 mel bins at 10 ms hops.

It runs data-side, between a spectrogram tokenizer's ``features`` and
``tokens_from_features``, in the training split only::

    spec = tokenizer.features(raw)                            # (N, M)
    tokens = tokenizer.tokens_from_features(augment(spec, generator))

so ``tokenizer.encode`` never changes. Every draw comes from the given
``torch.Generator`` (or a fresh one seeded by an int), never the global RNG,
so a seed reproduces the masks exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def bands(size: int, count: int, max_width: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``count`` random ``(start, end)`` bands of width U{0..max_width} within ``size`` positions.

    All draws come from one ``torch.rand`` call: per-call overhead, not arithmetic, is what costs here (the
    augmentation runs once per training clip per epoch).
    """
    max_width = min(max_width, size)
    draws = torch.rand(2 * count, generator=generator).tolist()  # (2K,) in [0, 1)
    spans = []
    for width_draw, start_draw in zip(draws[::2], draws[1::2], strict=True):
        width = int(width_draw * (max_width + 1))  # U{0..max_width}
        start = int(start_draw * (size - width + 1))  # U{0..size - width}
        spans.append((start, start + width))
    return spans


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masking policy (Park et al. 2019); call it on one ``(N, M)`` spectrogram.

    Attributes:
        freq_mask_width: F, the widest frequency band masked, in mel bins (capped at M).
        num_freq_masks: Frequency bands masked per call (they may overlap).
        time_mask_width: T, the widest time span masked, in frames.
        num_time_masks: Time spans masked per call (they may overlap).
        max_time_ratio: p, time spans are also at most ``floor(p * N)`` frames.
    """

    freq_mask_width: int = 27
    num_freq_masks: int = 2
    time_mask_width: int = 100
    num_time_masks: int = 2
    max_time_ratio: float = 0.2

    def __post_init__(self) -> None:
        for name in ("freq_mask_width", "num_freq_masks", "time_mask_width", "num_time_masks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SpecAugment.{name} must be a non-negative int, got {value!r}")
        ratio = self.max_time_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"SpecAugment.max_time_ratio must be a number in [0, 1], got {ratio!r}")

    def __call__(self, features: Tensor, rng: torch.Generator | int) -> Tensor:
        """Mask a log-mel spectrogram ``(N, M)``; returns a new ``(N, M)`` tensor, the input is left unchanged.

        Args:
            features: Spectrogram, frames × mel bins, e.g. ``SpectrogramTokenizer.features(raw)``.
            rng: A ``torch.Generator`` (advanced by the call) or an int seed for a fresh one.
        """
        if not isinstance(features, Tensor) or not features.is_floating_point():
            kind = features.dtype if isinstance(features, Tensor) else type(features).__name__
            raise TypeError(f"SpecAugment expects a float tensor (N, M), got {kind}")
        if features.dim() != 2 or features.numel() == 0:
            raise ValueError(f"SpecAugment expects a non-empty spectrogram (N, M), got shape {tuple(features.shape)}")
        if isinstance(rng, bool) or not isinstance(rng, torch.Generator | int):
            raise TypeError(f"rng must be a torch.Generator or an int seed, got {type(rng).__name__}")
        generator = torch.Generator().manual_seed(rng) if isinstance(rng, int) else rng
        frames, bins = features.shape
        time_width = min(self.time_mask_width, math.floor(self.max_time_ratio * frames))
        freq = bands(bins, self.num_freq_masks, self.freq_mask_width, generator)
        time = bands(frames, self.num_time_masks, time_width, generator)
        out = features.clone()
        if any(end > start for start, end in freq + time):
            fill = features.mean()
            for start, end in freq:
                out[:, start:end] = fill
            for start, end in time:
                out[start:end] = fill
        return out
