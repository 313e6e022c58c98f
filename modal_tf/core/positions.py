"""Positions from per-token integer coordinates along a tokenizer's axes.

Notation: B batch, T tokens, A axes, D model dim, H heads, Dh head dim.

Attention is order-blind (permutation-equivariant); a tokenizer therefore gives
every token coordinates ``(B, T, A)``: text ``(time,)``, image patches
``(row, col)``, spectrogram patches ``(time, freq)``, actions ``(step, dim)``.
Additive schemes split the model dim across axes, so 2-D sincos for patches
(MAE, https://arxiv.org/abs/2111.06377) falls out of the 1-D formula
(Vaswani et al. 2017, https://arxiv.org/abs/1706.03762 §3.5). Rotary positions
(Su et al. 2021, https://arxiv.org/abs/2104.09864) rotate per axis: the head
dim's rotation pairs are split across axes (axial RoPE, Heo et al. 2024).
``learned_grid`` instead learns one full-width vector per cell of the coordinate
grid (ViT's table, Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929),
so a converted ViT keeps its positions exactly. G_a below is its extent along axis a.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modal_tf.core.config import TransformerConfig


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` integers differing by at most one, largest first."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def _check_coords(coords: Tensor, num_axes: int) -> None:
    if coords.dim() != 3 or coords.shape[-1] != num_axes:
        raise ValueError(f"coords must have shape (B, T, {num_axes}), got {tuple(coords.shape)}")


def _axis_frequencies(pairs_per_axis: list[int], base: float) -> list[Tensor]:
    return [base ** (-torch.arange(pairs, dtype=torch.float32) / max(pairs, 1)) for pairs in pairs_per_axis]


def _angles(coords: Tensor, frequencies: list[Tensor]) -> Tensor:
    """Angles ``(B, T, sum(pairs))``: coordinate along axis a times that axis' frequencies."""
    parts = [
        coords[..., axis, None].float() * freq.to(coords.device)  # (B, T, pairs_a)
        for axis, freq in enumerate(frequencies)
    ]
    return torch.cat(parts, dim=-1)


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos features of each axis' coordinate, concatenated to width D.

    Features are scaled by ``1 / sqrt(D)``: the inverse of Vaswani et al.'s
    ``sqrt(d_model)`` embedding scale (§3.4), so unit-amplitude sinusoids do not
    drown token embeddings initialised at std 0.02 (measured on the order task:
    unscaled, training sat at chance for three epochs).
    """

    def __init__(self, dim: int, num_axes: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim < 2 * num_axes:
            raise ValueError(f"sinusoidal positions need dim >= 2 * num_axes, got dim={dim}, num_axes={num_axes}")
        self.dim = dim
        self.num_axes = num_axes
        self.frequencies = _axis_frequencies(split_evenly(dim // 2, num_axes), base)
        self.scale = dim**-0.5

    def forward(self, coords: Tensor) -> Tensor:
        """Map ``(B, T, A)`` integer coordinates to ``(B, T, D)`` float features."""
        _check_coords(coords, self.num_axes)
        angles = _angles(coords, self.frequencies)  # (B, T, D // 2)
        features = torch.cat([angles.sin(), angles.cos()], dim=-1) * self.scale  # (B, T, 2 * (D // 2))
        if features.shape[-1] < self.dim:  # odd D: one zero channel
            features = nn.functional.pad(features, (0, self.dim - features.shape[-1]))
        return features


class LearnedPositions(nn.Module):
    """One learned table per axis (width ~D / A each), concatenated to width D."""

    def __init__(self, dim: int, num_axes: int, max_positions: int) -> None:
        super().__init__()
        self.num_axes = num_axes
        self.max_positions = max_positions
        self.tables = nn.ModuleList(nn.Embedding(max_positions, width) for width in split_evenly(dim, num_axes))

    def forward(self, coords: Tensor) -> Tensor:
        """Map ``(B, T, A)`` integer coordinates to ``(B, T, D)`` learned features."""
        _check_coords(coords, self.num_axes)
        if coords.numel() and (coords.min() < 0 or coords.max() >= self.max_positions):
            raise ValueError(
                f"learned positions hold coordinates in [0, {self.max_positions}), got values in "
                f"[{int(coords.min())}, {int(coords.max())}]; raise TransformerConfig.max_positions"
            )
        return torch.cat([table(coords[..., axis]) for axis, table in enumerate(self.tables)], dim=-1)


class LearnedGridPositions(nn.Module):
    """One learned D-wide vector per grid cell, looked up by the whole coordinate tuple.

    The table is ``(G_1, ..., G_A, D)``. A sample whose coordinates run past the grid along
    some axis gets the table resampled bicubically to ``max(G_a, its extent_a)`` per axis and
    looks up there (ViT's fine-tuning at a higher resolution, Dosovitskiy et al. 2020 §3.2,
    with timm's ``resample_abs_pos_embed`` settings: bicubic, antialiased, corners not
    aligned). Samples inside the grid use the table as it is, so what the model does on its
    training grid never changes, and each row of a padded batch is resampled on its own, so
    a row's output never depends on its batch companions. Resampling supports 1 or 2 axes.

    The extent of a sample is all of it at once, which suits encoders. A causal decoder that
    generates past the grid sees a different table at each step, so cached decoding then stops
    matching full recomputation: give such a decoder a grid as long as its longest sequence.
    """

    def __init__(self, dim: int, grid: tuple[int, ...]) -> None:
        super().__init__()
        if not grid or any(size < 1 for size in grid):
            raise ValueError(f"learned_grid positions need a positive extent per axis, got grid={grid}")
        self.grid = tuple(grid)
        self.dim = dim
        # std 0.02 like the token embeddings (and timm's ViT), so positions do not drown them.
        self.table = nn.Parameter(torch.randn(*grid, dim) * 0.02)  # (G_1, ..., G_A, D)

    def forward(self, coords: Tensor) -> Tensor:
        """Map ``(B, T, A)`` integer coordinates to ``(B, T, D)`` learned features."""
        _check_coords(coords, len(self.grid))
        batch, tokens, _ = coords.shape
        if tokens == 0:
            return self.table.new_zeros(batch, 0, self.dim)
        if bool((coords < 0).any()):
            raise ValueError(f"learned_grid positions need coordinates >= 0, got minimum {int(coords.min())}")
        grid = torch.tensor(self.grid, device=coords.device)
        extent = coords.amax(dim=1) + 1  # (B, A); padded slots carry coordinate 0 and never widen it
        if bool((extent <= grid).all()):
            return self.table[coords.unbind(-1)]  # (B, T, D)
        sizes = torch.maximum(extent, grid)  # (B, A) resampled grid of each row
        features = self.table.new_zeros(batch, tokens, self.dim)
        for size in sizes.unique(dim=0):  # a batch holds few distinct sizes: one resample each
            rows = (sizes == size).all(-1)  # (B,)
            table = self.table if bool((size == grid).all()) else self.resampled(tuple(size.tolist()))
            features[rows] = table[coords[rows].unbind(-1)]  # (b, T, D)
        return features

    def resampled(self, size: tuple[int, ...]) -> Tensor:
        """The table resampled bicubically to ``size`` (one extent per axis): ``(*size, D)``."""
        axes = len(self.grid)
        if axes > 2 or len(size) != axes:
            raise ValueError(
                f"learned_grid positions resample 1 or 2 axes to a size with one extent per axis; the table "
                f"covers grid {self.grid}, got coordinates needing size {size}: keep coordinates inside the grid "
                "or raise TransformerConfig.position_grid"
            )
        plane, target = (1,) * (2 - axes) + self.grid, (1,) * (2 - axes) + size  # a 1-axis table is a 1 x G image
        image = self.table.reshape(*plane, self.dim).permute(2, 0, 1)[None]  # (1, D, G_r, G_c)
        image = F.interpolate(image.float(), size=target, mode="bicubic", align_corners=False, antialias=True)
        return image[0].permute(1, 2, 0).reshape(*size, self.dim).to(self.table.dtype)  # (*size, D)


def learned_grid_extent(config: TransformerConfig, num_axes: int) -> tuple[int, ...]:
    """The ``learned_grid`` table extent for an input with ``num_axes`` axes (see ``TransformerConfig``)."""
    if config.position_grid is not None and len(config.position_grid) == num_axes:
        return config.position_grid
    if num_axes == 1:
        return (config.max_positions,)
    raise ValueError(
        f"position='learned_grid' over {num_axes} axes needs TransformerConfig.position_grid with {num_axes} "
        f"per-axis extents (e.g. [8, 8] for 32x32 images in 4-pixel patches), got {config.position_grid}; "
        f"only 1-axis inputs fall back to max_positions rows"
    )


class RotaryPositions(nn.Module):
    """Axial rotary embedding: computes ``(cos, sin)`` once per forward for all layers."""

    def __init__(self, head_dim: int, num_axes: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim < 2 * num_axes:
            raise ValueError(
                f"rope needs head_dim >= 2 * num_axes, got head_dim={head_dim}, num_axes={num_axes}; "
                "use fewer heads or another position kind"
            )
        self.num_axes = num_axes
        self.frequencies = _axis_frequencies(split_evenly(head_dim // 2, num_axes), base)

    def forward(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, A)`` coordinates to ``(cos, sin)``, each ``(B, 1, T, Dh // 2)``."""
        _check_coords(coords, self.num_axes)
        angles = _angles(coords, self.frequencies)[:, None]  # (B, 1, T, Dh // 2)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``(B, H, T, Dh)`` queries or keys; pairs are (i, i + Dh/2) ("half" layout)."""
    first, second = x.chunk(2, dim=-1)  # (B, H, T, Dh // 2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def additive_positions(config: TransformerConfig, num_axes: int) -> nn.Module | None:
    """The module that adds positions to one input's embeddings, or None (``none``/``rope``)."""
    if config.position == "sinusoidal":
        return SinusoidalPositions(config.dim, num_axes, config.rope_base)
    if config.position == "learned":
        return LearnedPositions(config.dim, num_axes, config.max_positions)
    if config.position == "learned_grid":
        return LearnedGridPositions(config.dim, learned_grid_extent(config, num_axes))
    return None
