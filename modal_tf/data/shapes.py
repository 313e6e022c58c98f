"""Procedural "shapes" scenes: 1-3 coloured shapes on a canvas, with a class label and a caption.

Everything is drawn with numpy from a seed, so the data set is exact and
offline. The class is the kind of the *largest* shape (circle, square or
triangle), which a model must find among distractors; the caption names every
shape with its size and colour and, for two shapes, their spatial relation:
"a small red circle left of a large blue square".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

KINDS = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
SIZES = {"small": (3, 4), "large": (6, 8)}  # half-widths in pixels on a 32-pixel canvas, scaled with the canvas


@dataclass(frozen=True)
class Shape:
    """One drawn shape: kind, colour and size names, centre and half-width in pixels."""

    kind: str
    colour: str
    size: str
    x: int
    y: int
    radius: int

    def phrase(self) -> str:
        """``small red circle``."""
        return f"{self.size} {self.colour} {self.kind}"


def _mask(shape: Shape, canvas: int) -> np.ndarray:
    ys, xs = np.mgrid[0:canvas, 0:canvas]
    dx, dy = xs - shape.x, ys - shape.y
    if shape.kind == "circle":
        return dx**2 + dy**2 <= shape.radius**2
    if shape.kind == "square":
        return (np.abs(dx) <= shape.radius) & (np.abs(dy) <= shape.radius)
    # upward triangle: apex at the top, base at the bottom, width growing downwards
    inside_rows = (dy >= -shape.radius) & (dy <= shape.radius)
    return inside_rows & (np.abs(dx) <= (dy + shape.radius) / 2)


def caption(shapes: list[Shape]) -> str:
    """Describe the scene; two shapes get a left/right or above/below relation."""
    if len(shapes) == 1:
        return f"a {shapes[0].phrase()}"
    if len(shapes) == 2:
        first, second = shapes
        dx, dy = second.x - first.x, second.y - first.y
        relation = ("left of" if dx > 0 else "right of") if abs(dx) >= abs(dy) else ("above" if dy > 0 else "below")
        return f"a {first.phrase()} {relation} a {second.phrase()}"
    ordered = sorted(shapes, key=lambda shape: shape.x)
    return "from left to right: " + ", ".join(f"a {shape.phrase()}" for shape in ordered)


def render(shapes: list[Shape], canvas: int, rng: np.random.Generator) -> torch.Tensor:
    """``(3, canvas, canvas)`` uint8 image: dark noisy background, shapes painted in order."""
    image = rng.normal(30, 8, size=(canvas, canvas, 3))
    for shape in shapes:
        colour = np.array(COLOURS[shape.colour]) + rng.normal(0, 12, size=3)
        image[_mask(shape, canvas)] = colour
    return torch.from_numpy(np.clip(image, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


def _place(rng: random.Random, canvas: int, placed: list[Shape]) -> Shape | None:
    size = rng.choice(list(SIZES))
    low, high = SIZES[size]
    radius = max(1, round(rng.randint(low, high) * canvas / 32))
    for _ in range(50):
        x, y = rng.randint(radius, canvas - 1 - radius), rng.randint(radius, canvas - 1 - radius)
        if all((x - s.x) ** 2 + (y - s.y) ** 2 > (radius + s.radius + 2) ** 2 for s in placed):
            return Shape(rng.choice(KINDS), rng.choice(list(COLOURS)), size, x, y, radius)
    return None


def shape_scenes(count: int, seed: int, canvas: int = 32, max_shapes: int = 3) -> list[tuple[torch.Tensor, int, str]]:
    """``count`` scenes as ``(image (3, H, W) uint8, label, caption)``; label indexes ``KINDS``.

    The largest shape is unique: scenes with a tie for the largest half-width are redrawn.
    """
    if canvas < 16:
        raise ValueError(f"canvas must be >= 16 pixels, got {canvas}")
    if not 1 <= max_shapes <= 3:
        raise ValueError(f"max_shapes must be 1, 2 or 3, got {max_shapes}")
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed)
    scenes: list[tuple[torch.Tensor, int, str]] = []
    while len(scenes) < count:
        shapes: list[Shape] = []
        for _ in range(rng.randint(1, max_shapes)):
            shape = _place(rng, canvas, shapes)
            if shape is not None:
                shapes.append(shape)
        radii = sorted((shape.radius for shape in shapes), reverse=True)
        if len(radii) > 1 and radii[0] == radii[1]:
            continue
        largest = max(shapes, key=lambda shape: shape.radius)
        scenes.append((render(shapes, canvas, pixels), KINDS.index(largest.kind), caption(shapes)))
    return scenes
