"""Gato's mu-law action bins (``action_mulaw``): companded values cut into uniform bins.

Notation: S steps in a chunk, D action dims, M max magnitude, mu companding strength.

Raw samples, ids and token layout are those of ``actions.BinnedActionTokenizer`` (see ``actions``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modal_tf.tokenizers.actions import FLOAT_SLACK, MIN_HALF_RANGE, BinnedActionTokenizer, float_list, positive_int
from modal_tf.tokenizers.registry import register_tokenizer


@register_tokenizer("action_mulaw")
class ActionMuLawTokenizer(BinnedActionTokenizer):
    """Gato mu-law bins: ``F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1)``, clip, ``num_bins`` uniform bins.

    Reed et al. 2022 https://arxiv.org/abs/2205.06175 (mu = 100, M = 256, 1024 bins). Companding
    spends bins where values are small, so the error grows with ``|x|``; in companded space it is
    at most half a bin, ``1 / num_bins``; in original units see ``error_bound``. Like Gato, raw
    values are companded as they are; ``normalize=True`` first z-scores each dim with the mean/std
    ``fit`` learns (percentile ranges would map the data to ``[-1, 1]``, where ``M = 256`` leaves
    most bins unused). ``fit`` is needed only to learn ``dims`` (when not given) or the stats.

    Args:
        num_bins: Uniform bins over companded ``[-1, 1]``.
        mu: Companding strength.
        max_magnitude: M: ``|x| = M`` maps to ``+-1``; larger values are clipped.
        dims: Action dims, or None to learn them in ``fit``.
        normalize: Z-score each dim with fitted mean/std before companding.
    """

    def __init__(
        self,
        num_bins: int = 1024,
        mu: float = 100.0,
        max_magnitude: float = 256.0,
        dims: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(num_bins)
        for name, value in (("mu", mu), ("max_magnitude", max_magnitude)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
            raise ValueError(f"dims must be a positive int or None, got {dims!r}")
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be a bool, got {normalize!r}")
        self.mu, self.max_magnitude, self.normalize = float(mu), float(max_magnitude), normalize
        self.config_dims = self.dims = dims
        self.log_range = math.log1p(self.max_magnitude * self.mu)  # log(M mu + 1)
        self.means: np.ndarray | None = None
        self.stds: np.ndarray | None = None
        self.set_tolerance()

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "num_bins": self.num_bins,
            "mu": self.mu,
            "max_magnitude": self.max_magnitude,
            "dims": self.config_dims,
            "normalize": self.normalize,
        }

    @property
    def requires_fit(self) -> bool:
        """True while ``dims`` or (with ``normalize``) the mean/std are unknown."""
        return self.dims is None or (self.normalize and self.means is None)

    def fit_chunks(self, chunks: list[np.ndarray]) -> None:
        """Learn ``dims`` and, with ``normalize``, per-dim mean/std."""
        dims = chunks[0].shape[1]
        if self.config_dims is not None and dims != self.config_dims:
            raise ValueError(f"samples must have {self.config_dims} action dims (dims=), got {dims}")
        stacked = np.concatenate(chunks)  # (S_total, D)
        self.set_stats(dims, stacked.mean(0), stacked.std(0))

    def set_stats(self, dims: int, means: np.ndarray | None, stds: np.ndarray | None) -> None:
        """Install ``dims`` and (with ``normalize``) the ``(D,)`` stats."""
        self.dims = dims
        if self.normalize and means is not None and stds is not None:
            self.means, self.stds = means, np.maximum(stds, MIN_HALF_RANGE)
        self.set_tolerance()

    def set_tolerance(self) -> None:
        """Round-trip tolerance: the worst ``error_bound`` over the clipping range ``|x| <= M``."""
        std = float(self.stds.max()) if self.stds is not None else 1.0
        offset = float(np.abs(self.means).max()) if self.means is not None else 0.0
        worst = self.max_magnitude * std
        self.roundtrip_tolerance = self.bound(self.max_magnitude) * std + FLOAT_SLACK * (1.0 + worst + offset)

    def bound(self, magnitude: np.ndarray | float) -> Any:
        """Max error in (normalised) units at ``|x| = magnitude``, from the mean value theorem.

        With L = log(M mu + 1), the companded error is at most h = 1 / num_bins and ``F^-1`` has slope
        ``L (M mu + 1)^|y| / mu``, growing with ``|y|``; on ``[y - h, y + h]`` that is at most
        ``L (mu |x| + 1) e^(h L) / mu``, so the error is at most h times that.
        """
        half_bin = 1.0 / self.num_bins
        growth = math.exp(half_bin * self.log_range)
        return half_bin * self.log_range / self.mu * (self.mu * np.minimum(magnitude, self.max_magnitude) + 1) * growth

    def error_bound(self, raw: Any) -> np.ndarray:
        """Per-value bound ``(S, D)`` on ``|clipped(raw) - decode(encode(raw))|`` in original units."""
        chunk = self.chunk(raw)
        scale = self.stds if self.stds is not None else 1.0
        centre = self.means if self.means is not None else 0.0
        return np.asarray(self.bound(np.abs((chunk - centre) / scale)) * scale)

    def fitted_state(self) -> dict[str, Any]:
        """``dims`` and, with ``normalize``, ``means``/``stds``; empty when unfitted."""
        if self.requires_fit:
            return {}
        state: dict[str, Any] = {"dims": self.dims}
        if self.means is not None and self.stds is not None:
            state.update(means=self.means.tolist(), stds=self.stds.tolist())
        return state

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore ``fitted_state()`` output (an empty dict leaves the tokenizer as constructed)."""
        if not state:
            return
        dims = positive_int(state, "dims")
        if self.config_dims is not None and dims != self.config_dims:
            raise ValueError(f"fitted state has {dims} dims but the tokenizer was built with dims={self.config_dims}")
        if self.normalize:
            self.set_stats(dims, float_list(state, "means", dims), float_list(state, "stds", dims))
        else:
            self.set_stats(dims, None, None)

    def to_unit(self, chunk: np.ndarray) -> np.ndarray:
        """(Optionally z-scored) values companded to ``[-1, 1]`` for ``|x| <= M``."""
        if self.means is not None and self.stds is not None:
            chunk = (chunk - self.means) / self.stds
        return np.sign(chunk) * np.log1p(np.abs(chunk) * self.mu) / self.log_range

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Inverse companding (and de-normalisation)."""
        values = np.sign(unit) * np.expm1(np.abs(unit) * self.log_range) / self.mu
        if self.means is not None and self.stds is not None:
            values = values * self.stds + self.means
        return values
