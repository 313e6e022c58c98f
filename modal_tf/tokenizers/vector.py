"""Low-dimensional continuous vectors (robot proprioception, tabular features) as feature tokens."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modal_tf.tokenizers.base import FeatureTokenizer, Tokens
from modal_tf.tokenizers.registry import register_tokenizer


@register_tokenizer("vector")
class VectorTokenizer(FeatureTokenizer):
    """A ``(F,)`` vector becomes one token, a ``(T, F)`` sequence T tokens; axis ``time``.

    Args:
        dims: Feature width F every input must have.
        scale: Inputs are divided by this (a fixed normalisation; robot states in [-1, 1] need none).
    """

    axes = ("time",)

    def __init__(self, dims: int, scale: float = 1.0) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ValueError(f"dims must be a positive int, got {dims!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.dims = dims
        self.scale = float(scale)

    @property
    def feature_dim(self) -> int:
        """F."""
        return self.dims

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"dims": self.dims, "scale": self.scale}

    def encode(self, raw: Any) -> Tokens:
        """``(F,)`` or ``(T, F)`` floats (tensor, array or list) to ``(T, F)`` features."""
        if isinstance(raw, torch.Tensor):
            values = raw.detach().cpu()
        elif isinstance(raw, np.ndarray | list | tuple):
            values = torch.as_tensor(np.asarray(raw, dtype=np.float64))
        else:
            raise TypeError(f"vector tokenizer expects a tensor, array or list, got {type(raw).__name__}")
        if not (values.is_floating_point() or values.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"vector values must be numbers, got dtype {values.dtype}")
        values = values.float()
        shape = tuple(values.shape)
        if values.dim() == 1:
            values = values[None]  # (1, F)
        if values.dim() != 2 or values.shape[1] != self.dims:
            raise ValueError(f"vector must have shape ({self.dims},) or (T, {self.dims}), got {shape}")
        if values.shape[0] == 0:
            raise ValueError("vector sequence is empty (T = 0)")
        if not bool(torch.isfinite(values).all()):
            raise ValueError("vector contains NaN or inf")
        return Tokens(values / self.scale, torch.arange(values.shape[0])[:, None])
