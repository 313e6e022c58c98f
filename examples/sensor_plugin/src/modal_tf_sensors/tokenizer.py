"""Sensor frame tokenizer: a multichannel time series to one feature token per frame of samples.

Notation: C channels, S samples, L samples per frame (``frame``), T = S // L tokens,
F = L * C feature width, B batch, D model dim.

A raw sample is a ``(C, S)`` float array or tensor, e.g. an IMU window with rows
accelerometer x/y/z and gyroscope x/y/z. ``encode``:

1. checks type, rank, channel count, length and finiteness (clear ``TypeError``/``ValueError``);
2. standardises each channel with the mean and standard deviation that ``fit`` measured on
   the training split (z-scoring per channel, as scikit-learn's ``StandardScaler``; a
   constant channel keeps scale 1 and is only centred, so it never divides by zero);
3. cuts the series into non-overlapping frames of ``L`` samples (trailing samples that do not
   fill a frame are dropped) and flattens each frame time-major, feature ``l * C + c``
   (sample ``l`` of the frame, channel ``c``): the layout of the "frame stacking" of audio
   front ends, so the embedding's ``nn.Linear`` sees every channel of every sample.

Tokens lie on one axis, ``time``, with coordinate ``t`` for frame ``t``. The tokenizer holds
only Python numbers (the fitted statistics are lists of floats), so it pickles to DataLoader
workers and its state is plain JSON; the model side is ``embedding(dim)``, a linear ``F -> D``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from modal_tf.tokenizers import FeatureTokenizer, Tokens, register_tokenizer

_TINY_STD = 1e-6  # relative to max(1, |mean|): below it a channel counts as constant
_FLOAT_KINDS = "fiu"  # numpy dtype kinds accepted: float, signed and unsigned int (raw ADC counts)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def as_series(raw: Any, argument: str = "raw") -> Tensor:
    """A ``(C, S)`` numpy array or tensor of real numbers as a CPU float64 tensor (same shape).

    float64 so that ``fit``'s sums over many windows stay exact enough; ``encode`` casts the
    standardised result to float32.

    Raises:
        TypeError: ``raw`` is not an array or tensor, or holds bool/complex/object values.
        ValueError: ``raw`` is not 2-D or holds NaN/inf.
    """
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"{argument} must hold real numbers (float or int), got numpy dtype {raw.dtype}")
        series = torch.from_numpy(np.array(raw, dtype=np.float64))  # a native-order copy: never the caller's buffer
    elif isinstance(raw, Tensor):
        if raw.dtype == torch.bool or raw.is_complex():
            raise TypeError(f"{argument} must hold real numbers (float or int), got tensor dtype {raw.dtype}")
        series = raw.detach().to("cpu", torch.float64)
    else:
        raise TypeError(
            f"{argument} must be a (channels, samples) numpy.ndarray or torch.Tensor, got {type(raw).__name__}"
            + ("; wrap a nested list in numpy.asarray(...)" if isinstance(raw, list | tuple) else "")
        )
    if series.dim() != 2:
        raise ValueError(f"{argument} must have shape (channels, samples), got shape {tuple(series.shape)}")
    if not bool(torch.isfinite(series).all()):
        raise ValueError(f"{argument} holds NaN or inf values; fill or drop the gaps before tokenizing")
    return series


@register_tokenizer("sensor_frames")
class SensorFrameTokenizer(FeatureTokenizer):
    """Multichannel sensor series ``(C, S)`` to one token per ``frame`` samples, channels standardised. Axis ``time``.

    Registered by the decorator when its module is imported and by the ``modal_tf.tokenizers``
    entry point of the ``modal-tf-sensors`` distribution when a recipe names ``sensor_frames``.

    Args:
        channels: Channel count C every series must have (6 for a 3-axis accelerometer plus gyroscope).
        frame: Samples L per token; the feature width is ``F = frame * channels``.
        normalize: Learn per-channel mean and standard deviation in ``fit`` and standardise with them
            (True), or pass values through unchanged (False, nothing to fit).
        max_frames: Most tokens per series, or None for no limit; a longer series raises ``ValueError``
            (learned positions hold ``max_positions`` coordinates, 1024 by default).
    """

    axes = ("time",)

    def __init__(
        self, channels: int = 6, frame: int = 8, normalize: bool = True, max_frames: int | None = None
    ) -> None:
        self.channels = _positive_int(channels, "channels")
        self.frame = _positive_int(frame, "frame")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__} ({normalize!r})")
        self.normalize = normalize
        self.max_frames = None if max_frames is None else _positive_int(max_frames, "max_frames")
        # Plain lists of floats, not tensors: JSON as they are, and tiny to pickle to workers.
        self.mean: list[float] | None = None
        self.std: list[float] | None = None

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "channels": self.channels,
            "frame": self.frame,
            "normalize": self.normalize,
            "max_frames": self.max_frames,
        }

    @property
    def feature_dim(self) -> int:
        """F = frame * channels."""
        return self.frame * self.channels

    @property
    def requires_fit(self) -> bool:
        """True while normalisation is on and no statistics were fitted or loaded."""
        return self.normalize and self.mean is None

    def _checked(self, raw: Any, argument: str) -> Tensor:
        series = as_series(raw, argument)
        if series.shape[0] != self.channels:
            raise ValueError(
                f"{argument} must have {self.channels} channels (rows), got shape {tuple(series.shape)}; "
                "a (samples, channels) array needs .T first"
            )
        if series.shape[1] < self.frame:
            raise ValueError(
                f"{argument} has {series.shape[1]} samples, fewer than one frame of {self.frame}; "
                "pass a longer window or a smaller frame"
            )
        return series

    def fit(self, samples: Iterable[Any]) -> None:
        """Measure each channel's mean and standard deviation over all samples of all ``samples``.

        One pass, so a generator works; sums are float64. A no-op when ``normalize`` is False.

        Raises:
            TypeError: ``samples`` is not an iterable of series.
            ValueError: ``samples`` is empty or a series is malformed (named by its index).
        """
        if not self.normalize:
            return
        if isinstance(samples, np.ndarray | Tensor) or not isinstance(samples, Iterable):
            raise TypeError(
                f"samples must be an iterable of (channels, samples) series, got {type(samples).__name__} "
                "(wrap a single series in a list)"
            )
        count = 0
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        shift: Tensor | None = None
        for index, raw in enumerate(samples):
            series = self._checked(raw, f"samples[{index}]")
            if shift is None:  # shifted sums avoid the cancellation of E[x^2] - E[x]^2 around large offsets
                shift = series[:, 0].clone()  # (C,)
            centred = series - shift[:, None]  # (C, S)
            total += centred.sum(1)
            squares += centred.square().sum(1)
            count += series.shape[1]
        if shift is None:
            raise ValueError("fit needs at least one series, got an empty iterable")
        mean = total / count  # (C,) of the shifted values
        variance = (squares / count - mean.square()).clamp_min(0.0)
        mean = mean + shift
        std = variance.sqrt()
        constant = std < _TINY_STD * mean.abs().clamp_min(1.0)
        self.mean = mean.tolist()
        self.std = torch.where(constant, torch.ones_like(std), std).tolist()

    def fitted_state(self) -> dict[str, Any]:
        """``{"mean": [C floats], "std": [C floats]}``, or ``{}`` before fitting."""
        return {} if self.mean is None or self.std is None else {"mean": list(self.mean), "std": list(self.std)}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore ``fitted_state()`` output; ``{}`` leaves the tokenizer unfitted."""
        if not state:
            return
        values = {}
        for key in ("mean", "std"):
            numbers = state.get(key)
            if not isinstance(numbers, list) or len(numbers) != self.channels:
                raise ValueError(f"fitted state {key!r} must be a list of {self.channels} numbers, got {numbers!r:.80}")
            if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in numbers):
                raise ValueError(f"fitted state {key!r} must hold finite numbers, got {numbers!r:.80}")
            values[key] = [float(x) for x in numbers]
        if any(x <= 0 for x in values["std"]):
            raise ValueError(f"fitted state 'std' must be positive, got {values['std']}")
        self.mean, self.std = values["mean"], values["std"]

    def encode(self, raw: Any) -> Tokens:
        """A ``(C, S)`` series to ``Tokens``: features ``(T, F)`` float32 and coordinates ``(T, 1)``.

        Raises:
            RuntimeError: normalisation is on and ``fit`` has not run (nor a state been loaded).
            TypeError: ``raw`` is not a real-valued array or tensor.
            ValueError: wrong rank or channel count, fewer than ``frame`` samples, NaN/inf,
                or more than ``max_frames`` frames.
        """
        if self.requires_fit:
            raise RuntimeError(
                "SensorFrameTokenizer is not fitted: call fit(training_series) first, or pass normalize=False"
            )
        series = self._checked(raw, "raw")
        tokens = series.shape[1] // self.frame
        if self.max_frames is not None and tokens > self.max_frames:
            raise ValueError(
                f"raw has {series.shape[1]} samples = {tokens} frames of {self.frame}, more than "
                f"max_frames={self.max_frames}; cut the recording into windows first"
            )
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=torch.float64)[:, None]  # (C, 1)
            std = torch.tensor(self.std, dtype=torch.float64)[:, None]  # (C, 1)
            series = (series - mean) / std  # (C, S)
        frames = series[:, : tokens * self.frame]  # (C, T * L): trailing partial frame dropped
        features = rearrange(frames, "c (t l) -> t (l c)", l=self.frame)  # (T, F), feature l * C + c
        return Tokens(features.float().contiguous(), torch.arange(tokens)[:, None])
