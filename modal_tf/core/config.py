"""Frozen configuration of the modality-agnostic Transformer core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MLP_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("none", "sinusoidal", "learned", "learned_grid", "rope")


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and tricks of one Transformer stack.

    Attributes:
        dim: Model (residual stream) width D.
        depth: Number of blocks.
        num_heads: Attention heads H; ``dim`` must be divisible by it.
        mlp_ratio: Hidden width of the MLP as a multiple of ``dim``.
        mlp: ``gelu`` (Vaswani et al. 2017 / GPT-2) or ``swiglu`` (Shazeer 2020).
        norm: ``layernorm`` or ``rmsnorm`` (Zhang & Sennrich 2019), applied pre-block.
        norm_eps: Epsilon added to the variance (mean square for ``rmsnorm``) inside every norm;
            PyTorch's LayerNorm default 1e-5, timm's ViT uses 1e-6.
        dropout: Dropout on attention weights, residual branches and embeddings.
        bias: Whether linear layers and LayerNorm carry a bias.
        position: How token coordinates become order information: ``none``
            (attention is order-blind), ``sinusoidal`` and ``learned`` (added to the
            embeddings, model dim split across axes), ``learned_grid`` (added; one learned
            D-wide vector per cell of the coordinate grid, as in ViT), ``rope`` (rotary, per axis).
        max_positions: Largest coordinate + 1 along any axis for ``learned`` positions, and
            the length of the ``learned_grid`` table of 1-axis inputs without a ``position_grid``.
        rope_base: Base of the rotary / sinusoidal frequency ladder.
        position_grid: Per-axis extent of the ``learned_grid`` table for inputs with
            ``len(position_grid)`` axes, e.g. ``(8, 8)`` for 32x32 images in 4-pixel patches
            (the table has ``prod(position_grid)`` rows). Required for inputs with 2 or more axes:
            ``max_positions ** A`` rows would be far too many. Inputs whose coordinates exceed it
            get the table resampled (see ``LearnedGridPositions``). Only valid with ``learned_grid``.
    """

    dim: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    mlp: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    dropout: float = 0.0
    bias: bool = True
    position: str = "sinusoidal"
    max_positions: int = 1024
    rope_base: float = 10000.0
    position_grid: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "num_heads", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"TransformerConfig.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.head_dim % 2:
            raise ValueError(f"TransformerConfig head_dim = dim / num_heads must be even, got {self.head_dim}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"TransformerConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.rope_base > 1.0:
            raise ValueError(f"TransformerConfig.rope_base must be > 1, got {self.rope_base!r}")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, int | float) or not 0 < self.norm_eps < 1:
            raise ValueError(f"TransformerConfig.norm_eps must be a float in (0, 1), got {self.norm_eps!r}")
        for name, allowed in (("mlp", MLP_KINDS), ("norm", NORM_KINDS), ("position", POSITION_KINDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"TransformerConfig.{name} must be one of {allowed}, got {value!r}")
        self._check_position_grid()

    def _check_position_grid(self) -> None:
        grid = self.position_grid
        if grid is None:
            return
        if self.position != "learned_grid":
            raise ValueError(
                "TransformerConfig.position_grid only applies to position='learned_grid', "
                f"got position={self.position!r}"
            )
        if (
            isinstance(grid, str | bytes)
            or not isinstance(grid, Sequence)
            or not grid
            or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in grid)
        ):
            raise ValueError(
                f"TransformerConfig.position_grid must be a list of positive ints (one per axis), got {grid!r}"
            )
        # YAML and checkpoints hand back a list; a tuple keeps the frozen config hashable.
        object.__setattr__(self, "position_grid", tuple(grid))

    @property
    def head_dim(self) -> int:
        """Width Dh of one attention head."""
        return self.dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP."""
        return int(self.dim * self.mlp_ratio)
