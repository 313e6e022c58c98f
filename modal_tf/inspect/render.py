"""Attention weights drawn as PNG heatmaps with matplotlib.

Notation: L layers, H heads, T query tokens, S key tokens, R x Q grid rows x columns
(image patches, or mel bands x time patches), M mel bins, N spectrogram frames.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure`` saved through
the Agg canvas), never pyplot: no global figure registry to leak, no GUI backend to pick,
so rendering is safe in tests, workers and headless machines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from modal_tf.tokenizers import DiscreteTokenizer, Tokenizer
from modal_tf.tokenizers.patch import PatchTokenizer, to_chw
from modal_tf.tokenizers.spectrogram import SpectrogramTokenizer

DPI = 100
MAX_TICKS = 64  # more labels than this overlap; longer axes label every k-th token
CMAP = "viridis"


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)  # attach the Agg canvas explicitly: PNG output without any backend selection
    figure.savefig(path, dpi=DPI)
    return path


def _check(weights: Tensor, rank: int, what: str, shape: str) -> np.ndarray:
    if not isinstance(weights, Tensor) or weights.dim() != rank:
        got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"{what} must be a tensor of shape {shape}, got {got}")
    return weights.detach().float().cpu().numpy()


def _labels(axes: Axes, which: Literal["x", "y"], labels: Sequence[str]) -> None:
    """Put token labels on one axis, every k-th when there are more than ``MAX_TICKS``."""
    step = max(1, math.ceil(len(labels) / MAX_TICKS))
    positions = list(range(0, len(labels), step))
    shown = [labels[index] for index in positions]
    size = 9 if len(positions) <= 32 else 6
    # parse_math=False: a "$" byte or a BPE piece like "$x$" is text, not mathtext.
    if which == "x":
        rotation = 0 if max(map(len, shown), default=0) <= 2 else 90  # single bytes read best upright
        axes.set_xticks(positions, shown, rotation=rotation, fontsize=size, parse_math=False)
    else:
        axes.set_yticks(positions, shown, fontsize=size, parse_math=False)


def _side(count: int) -> float:
    """Inches for an axis of ``count`` labelled cells: readable labels, bounded figure."""
    return min(16.0, max(4.0, 0.2 * count + 2.0))


def save_head_maps(
    weights: Tensor, query_labels: Sequence[str], key_labels: Sequence[str], folder: Path, tag: str
) -> list[Path]:
    """Write one heatmap per head, ``{folder}/{tag}_head{h}.png``: queries down, keys across.

    Args:
        weights: ``(H, T, S)`` attention weights of one layer and one batch row.
        query_labels: T labels of the query tokens.
        key_labels: S labels of the key tokens.
        folder: Existing output folder.
        tag: File-name stem, e.g. ``layer0`` or ``decoder_cross_layer1``.

    Returns:
        The H written paths.
    """
    array = _check(weights, 3, "weights", "(H, T, S)")
    heads, queries, keys = array.shape
    if len(query_labels) != queries or len(key_labels) != keys:
        raise ValueError(
            f"need {queries} query and {keys} key labels for weights of shape {array.shape}, "
            f"got {len(query_labels)} and {len(key_labels)}"
        )
    paths = []
    for head in range(heads):
        figure = Figure(figsize=(_side(keys) + 1.0, _side(queries)), layout="constrained")
        axes = figure.add_subplot()
        image = axes.imshow(array[head], cmap=CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        _labels(axes, "x", key_labels)
        _labels(axes, "y", query_labels)
        axes.set_xlabel("key (attended to)")
        axes.set_ylabel("query (attending)")
        axes.set_title(f"{tag}, head {head}", parse_math=False)
        figure.colorbar(image, ax=axes, fraction=0.04)
        paths.append(_save(figure, folder / f"{tag}_head{head}.png"))
    return paths


def save_overview(layers: Sequence[Tensor], path: Path, title: str) -> Path:
    """Write every layer's heads as a grid of small heatmaps: rows are layers, columns heads.

    Args:
        layers: L tensors ``(H, T, S)`` (the same H in each).
        path: PNG file to write.
        title: Figure title.
    """
    arrays = [_check(weights, 3, f"layers[{index}]", "(H, T, S)") for index, weights in enumerate(layers)]
    if not arrays or len({array.shape[0] for array in arrays}) != 1:
        raise ValueError(f"layers must be a non-empty list with equal head counts, got {[a.shape for a in arrays]}")
    rows, heads = len(arrays), arrays[0].shape[0]
    figure = Figure(figsize=(2.2 * heads + 0.6, 2.2 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, heads, squeeze=False)
    for layer, array in enumerate(arrays):
        for head in range(heads):
            axes = grid[layer][head]
            axes.imshow(array[head], cmap=CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if layer == 0:
                axes.set_title(f"head {head}", fontsize=9)
            if head == 0:
                axes.set_ylabel(f"layer {layer}", fontsize=9)
    figure.suptitle(title, fontsize=10, parse_math=False)
    return _save(figure, path)


def save_token_focus(
    focus: Sequence[Tensor], labels: Sequence[str], path: Path, title: str, spectrogram: Tensor | None = None
) -> Path:
    """Write one query's attention over a token sequence: per layer a heads-by-tokens strip (plus the head mean).

    Args:
        focus: L tensors ``(H, S)``: each head's weights over the S input tokens.
        labels: S token labels (bytes, words, frame indices).
        path: PNG file to write.
        title: Figure title.
        spectrogram: Optional ``(M, N)`` log-mel drawn on top, stretched so its time axis lines up
            with the S tokens (audio frames).
    """
    arrays = [_check(weights, 2, f"focus[{index}]", "(H, S)") for index, weights in enumerate(focus)]
    if not arrays or any(array.shape[1] != len(labels) for array in arrays):
        raise ValueError(f"focus needs L >= 1 tensors (H, {len(labels)}), got {[a.shape for a in arrays]}")
    heads, keys = arrays[0].shape
    panels = len(arrays) + (spectrogram is not None)
    figure = Figure(figsize=(_side(keys) + 1.5, (0.28 * (heads + 1) + 0.9) * panels + 1.2), layout="constrained")
    grid = figure.subplots(panels, 1, squeeze=False, sharex=True)
    axes_list = [row[0] for row in grid]
    if spectrogram is not None:
        mel = _check(spectrogram, 2, "spectrogram", "(M, N)")
        top = axes_list.pop(0)
        extent = (-0.5, keys - 0.5, 0.0, float(mel.shape[0]))  # frames stretched onto token columns
        top.imshow(mel, cmap="magma", origin="lower", aspect="auto", extent=extent, interpolation="nearest")
        top.set_ylabel("mel bin", fontsize=8)
    for layer, (axes, array) in enumerate(zip(axes_list, arrays, strict=True)):
        strip = np.concatenate([array, array.mean(0, keepdims=True)], axis=0)  # (H + 1, S): heads, then their mean
        image = axes.imshow(strip, cmap=CMAP, vmin=0.0, aspect="auto", interpolation="nearest")
        axes.set_yticks(range(heads + 1), [f"h{head}" for head in range(heads)] + ["mean"], fontsize=7)
        axes.set_ylabel(f"layer {layer}", fontsize=9)
        figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    _labels(axes_list[-1], "x", labels)
    figure.suptitle(title, fontsize=10, parse_math=False)
    return _save(figure, path)


def _extent(height: int, width: int, origin: str) -> tuple[float, float, float, float]:
    """``imshow`` extent (left, right, bottom, top) of a ``height x width`` pixel array."""
    return (0.0, float(width), float(height), 0.0) if origin == "upper" else (0.0, float(width), 0.0, float(height))


def save_grid_focus(
    focus: Sequence[Tensor],
    path: Path,
    title: str,
    background: np.ndarray | None,
    cell: tuple[int, int],
    origin: Literal["upper", "lower"] = "upper",
) -> Path:
    """Write one query's attention over a 2-D grid of tokens, overlaid on the input: rows are layers.

    Columns: the input alone (when ``background`` is given), one per head, and the head mean.
    Each heat panel is scaled to its own maximum (printed in its title), so weak heads stay visible.

    Args:
        focus: L tensors ``(H, R, Q)``: each head's weights over the R x Q token grid.
        path: PNG file to write.
        title: Figure title.
        background: The input drawn under the heat: an image ``(height, width, C)`` in [0, 1],
            ``(height, width)`` grey, or a spectrogram ``(M, N)``; None for the bare grid.
        cell: ``(height, width)`` of one grid cell in background pixels (the patch size).
        origin: ``upper`` for images (row 0 on top), ``lower`` for spectrograms (low bins at the bottom).
    """
    arrays = [_check(weights, 3, f"focus[{index}]", "(H, R, Q)") for index, weights in enumerate(focus)]
    if not arrays or len({array.shape for array in arrays}) != 1:
        raise ValueError(f"focus needs L >= 1 tensors of one shape (H, R, Q), got {[a.shape for a in arrays]}")
    heads, rows, cols = arrays[0].shape
    extent = _extent(rows * cell[0], cols * cell[1], origin)  # the token grid, in background pixels
    under = None if background is None else _extent(background.shape[0], background.shape[1], origin)
    offset = background is not None
    columns = offset + heads + 1
    figure = Figure(figsize=(2.0 * columns + 0.4, 2.0 * len(arrays) + 0.8), layout="constrained")
    grid = figure.subplots(len(arrays), columns, squeeze=False)
    for layer, array in enumerate(arrays):
        panels = np.concatenate([array, array.mean(0, keepdims=True)], axis=0)  # (H + 1, R, Q)
        for column in range(columns):
            axes = grid[layer][column]
            axes.set_xticks([])
            axes.set_yticks([])
            if background is not None:  # at its own size: a padded last patch row may overhang it
                axes.imshow(background, cmap="gray", origin=origin, extent=under, interpolation="nearest")
            if column == 0:
                axes.set_ylabel(f"layer {layer}", fontsize=9)
            if column < offset:
                axes.set_title("input", fontsize=8)
                continue
            heat = panels[column - offset]
            name = f"h{column - offset}" if column - offset < heads else "mean"
            alpha = 0.6 if background is not None else 1.0
            axes.imshow(heat, cmap=CMAP, origin=origin, extent=extent, alpha=alpha, interpolation="nearest")
            axes.set_xlim(extent[0], extent[1])
            axes.set_ylim(extent[2], extent[3])
            axes.set_title(f"{name} (max {heat.max():.2f})", fontsize=8)
    figure.suptitle(title, fontsize=10, parse_math=False)
    return _save(figure, path)


def _display_image(raw: Any) -> np.ndarray:
    """A raw image as ``(height, width, C)`` or ``(height, width)`` floats in [0, 1] for drawing."""
    image = to_chw(raw)  # (C, height, width)
    pixels = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    low, high = float(pixels.min()), float(pixels.max())
    if image.dtype != torch.uint8 and (low < 0.0 or high > 1.0):  # normalized floats: stretch for display
        pixels = (pixels - low) / max(high - low, 1e-12)
    array = pixels.permute(1, 2, 0).numpy()  # (height, width, C)
    return array[..., 0] if array.shape[-1] == 1 else array


def focus_grid(focus: Tensor, coords: Tensor) -> Tensor:
    """Scatter ``(H, S)`` weights of S tokens at ``(S, 2)`` integer coordinates into an ``(H, R, Q)`` grid.

    R and Q are one more than the largest coordinate along each axis; cells no token covers stay 0.
    """
    if coords.dim() != 2 or coords.shape[1] != 2 or focus.dim() != 2 or focus.shape[1] != coords.shape[0]:
        raise ValueError(
            f"focus_grid needs (H, S) weights and (S, 2) coords, got {tuple(focus.shape)} and {tuple(coords.shape)}"
        )
    first, second = coords[:, 0], coords[:, 1]  # (S,) each: (row, col) or (time, freq)
    grid = focus.new_zeros(focus.shape[0], int(first.max()) + 1, int(second.max()) + 1)  # (H, R, Q)
    grid[:, first, second] = focus
    return grid


def save_input_focus(
    focus: Sequence[Tensor], tokenizer: Tokenizer, raw: Any, labels: Sequence[str], path: Path, title: str
) -> Path:
    """Draw one query's attention over an input in the input's own geometry.

    Discrete tokens (text) and 1-axis features (audio frames) become labelled strips, audio frames
    under their spectrogram; 2-axis tokens become grids over the image (``patch`` tokenizers), over
    the spectrogram (``spectrogram`` patches), or bare.

    Args:
        focus: L tensors ``(H, S)``: each head's weights over the S tokens of ``raw``.
        tokenizer: The input's tokenizer (it gives coordinates, patch sizes and spectrograms).
        raw: The raw input sample the weights were computed on.
        labels: S token labels.
        path: PNG file to write.
        title: Figure title.
    """
    tokens = tokenizer.encode(raw)
    if isinstance(tokenizer, DiscreteTokenizer) or tokens.coords.shape[1] == 1:
        spectrogram = None
        if isinstance(tokenizer, SpectrogramTokenizer):  # frames under the time strip, trailing partial token cut
            spectrogram = tokenizer.features(raw)[: len(labels) * tokenizer.frames_per_token].T  # (M, N)
        return save_token_focus(focus, labels, path, title, spectrogram)
    grids = [focus_grid(layer, tokens.coords) for layer in focus]  # L x (H, R, Q)
    if isinstance(tokenizer, PatchTokenizer):
        cell = (tokenizer.patch_size, tokenizer.patch_size)
        return save_grid_focus(grids, path, title, _display_image(raw), cell)
    if isinstance(tokenizer, SpectrogramTokenizer) and tokenizer.patch_size is not None:
        flipped = [grid.transpose(1, 2) for grid in grids]  # (H, bands, time patches)
        frames = flipped[0].shape[2] * tokenizer.patch_size[0]  # trailing frames no token covers are cut
        mel = tokenizer.features(raw)[:frames].T.numpy()  # (M, N): frequency up, time across
        cell = (tokenizer.patch_size[1], tokenizer.patch_size[0])
        return save_grid_focus(flipped, path, title, mel, cell, origin="lower")
    return save_grid_focus(grids, path, title, None, (1, 1))
