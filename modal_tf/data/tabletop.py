"""A 2-D tabletop for vision-language-action (VLA) policies: reach the object the instruction names.

Notation: N parallel episodes, K steps in an action chunk, H x W image pixels.

World: the square ``[-1, 1]^2`` seen from above, ``x`` to the right, ``y`` **up** (image row 0 is
``y = +1``, so ``imshow(image, extent=(-1, 1, -1, 1))`` lines a path up with the picture). It holds
an end effector (a point) and 2-4 objects of distinct (colour, shape) pairs, colours and shapes as
in ``modal_tf.data.shapes``. The instruction names the target by colour, shape or both ("reach the
red square", "go to the circle", "touch the green object"), always so that exactly one object fits.

An action is ``(dx, dy)``: each component is clipped to ``[-1, 1]`` and scaled by ``max_step``
(0.15 of the half-width), and the end effector stays on the table. An episode succeeds when the end
effector is within ``success_radius`` of the target's centre, and ends on success or after
``max_steps`` actions.

The scripted expert is a proportional controller at full speed along the straight line (the action
vector is scaled down, not clipped per component, so the direction is kept), plus Gaussian noise.

Seeds: ``reset(seed)`` draws everything from ``seed``. ``episode_seed(split, seed, index)`` maps
demonstrations to even and held-out evaluation episodes to odd environment seeds, so the two sets
never share a scene whatever base seeds are chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from modal_tf.data.shapes import COLOURS, KINDS

VERBS = ("reach", "go to", "touch", "move to")
SPLITS = ("demo", "eval")  # index = parity of the environment seed
DEFAULT_EXPERT_NOISE = 0.1  # std of the expert's action noise, in action units (1 = a full step)
START_DISTANCE = 0.5  # the end effector starts at least this far from the target: no free successes
BACKGROUND = 30.0  # dark table, as in shapes.py, so the white end effector stands out
WHITE = 255


@dataclass(frozen=True)
class TabletopConfig:
    """Geometry and limits of the tabletop; all lengths in world units (the table is 2 wide).

    Attributes:
        image_size: Height and width of the rendered RGB image in pixels (>= 16).
        min_objects: Fewest objects in a scene (>= 2, so the instruction has to discriminate).
        max_objects: Most objects in a scene (<= 4).
        object_radius: Half-width of every object.
        max_step: Distance one action component of 1 moves the end effector.
        success_radius: Distance to the target's centre that counts as reached.
        max_steps: Actions before an unsuccessful episode ends.
    """

    image_size: int = 32
    min_objects: int = 2
    max_objects: int = 4
    object_radius: float = 0.2
    max_step: float = 0.15
    success_radius: float = 0.1
    max_steps: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {self.image_size!r}")
        if not 2 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError(f"need 2 <= min_objects <= max_objects <= 4, got {self.min_objects}, {self.max_objects}")
        if not 0.05 <= self.object_radius <= 0.25:
            raise ValueError(f"object_radius must be in [0.05, 0.25], got {self.object_radius}")
        if not 0 < self.max_step <= 1:
            raise ValueError(f"max_step must be in (0, 1], got {self.max_step}")
        if not 0 < self.success_radius < START_DISTANCE:
            raise ValueError(f"success_radius must be in (0, {START_DISTANCE}), got {self.success_radius}")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")


@dataclass(frozen=True)
class SceneObject:
    """One object on the table: colour and shape names, centre ``(x, y)`` in world units."""

    colour: str
    kind: str
    x: float
    y: float


class Observation(NamedTuple):
    """What the robot sees after a reset or a step.

    Attributes:
        image: ``(3, H, W)`` uint8 RGB render, the end effector drawn as a white cross.
        state: ``(2,)`` float32 end-effector ``(x, y)`` in ``[-1, 1]``.
        instruction: The task in words, e.g. ``"reach the red square"``.
        target: ``(2,)`` float32 centre of the target. **Privileged**: for scripted experts and
            diagnostics only; a learned policy must not read it, and demonstrations never store it.
    """

    image: Tensor
    state: Tensor
    instruction: str
    target: Tensor


def episode_seed(split: str, seed: int, index: int) -> int:
    """Environment seed of episode ``index`` of a ``split`` ("demo" or "eval") drawn from base ``seed``.

    Demonstration seeds are even and evaluation seeds odd, so the sets are disjoint for any base
    seeds; within a split, (seed, index) pairs are hashed by numpy's SeedSequence so that nearby base
    seeds give unrelated episodes (collisions are 2**-32-rare, not excluded).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(seed, int) or not isinstance(index, int) or seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative ints, got seed={seed!r}, index={index!r}")
    mixed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])  # uniform uint32
    return 2 * mixed + SPLITS.index(split)


def as_action(action: Any, argument: str = "action") -> np.ndarray:
    """Validate one action and return it as float64 ``(2,)``, not yet clipped.

    Raises:
        TypeError: not a numeric array, tensor or sequence.
        ValueError: a shape other than ``(2,)``, or NaN/inf values.
    """
    if isinstance(action, Tensor):
        action = action.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{argument} must be numeric (dx, dy), got {type(action).__name__}: {error}") from None
    if array.shape != (2,):
        raise ValueError(f"{argument} must have shape (2,) = (dx, dy), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{argument} must be finite, got {array.tolist()}")
    return array


def expert_plan(
    positions: np.ndarray,
    targets: np.ndarray,
    steps: int,
    max_step: float,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
) -> np.ndarray:
    """Open-loop expert actions ``(N, K=steps, 2)`` in ``[-1, 1]`` from positions and targets ``(N, 2)``.

    Each step moves ``target - position`` divided by ``max_step`` (gain 1: it lands on the target once
    it is within reach), scaled so that no component exceeds 1; noise ``N(0, noise^2)`` is added and
    the action clipped. Later steps of the chunk follow the noisy plan through the table's dynamics.
    """
    if noise > 0 and rng is None:
        raise ValueError(f"expert noise {noise} needs a numpy Generator rng for reproducibility")
    position = np.asarray(positions, dtype=np.float64).copy()  # (N, 2)
    plan = np.empty((position.shape[0], steps, 2))  # (N, K, 2)
    for step in range(steps):
        velocity = (targets - position) / max_step  # (N, 2), in action units
        action = velocity / np.maximum(1.0, np.abs(velocity).max(axis=1, keepdims=True))
        if noise > 0 and rng is not None:
            action = action + rng.normal(0.0, noise, size=action.shape)
        plan[:, step] = np.clip(action, -1.0, 1.0)
        position = np.clip(position + plan[:, step] * max_step, -1.0, 1.0)
    return plan


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of pixel centres: ``xs (1, W)`` growing right, ``ys (H, 1)`` growing up."""
    centres = -1 + (2 * np.arange(size) + 1) / size  # (W,)
    return centres[None, :], -centres[:, None]


def object_mask(item: SceneObject, radius: float, size: int) -> np.ndarray:
    """``(H, W)`` bool: pixels whose centre lies inside ``item`` (triangle: apex up, as in shapes.py)."""
    xs, ys = _pixel_grid(size)
    dx, dy = xs - item.x, ys - item.y  # (1, W), (H, 1) -> broadcast (H, W) below
    if item.kind == "circle":
        return np.asarray(dx**2 + dy**2 <= radius**2)
    if item.kind == "square":
        return np.asarray((np.abs(dx) <= radius) & (np.abs(dy) <= radius))
    return np.asarray((np.abs(dy) <= radius) & (np.abs(dx) <= (radius - dy) / 2))


def to_pixel(point: np.ndarray, size: int) -> tuple[int, int]:
    """``(row, col)`` of the pixel holding world point ``(x, y)``."""
    col = int(np.clip((point[0] + 1) / 2 * size, 0, size - 1))
    row = int(np.clip((1 - point[1]) / 2 * size, 0, size - 1))
    return row, col


class Tabletop:
    """One seeded tabletop episode at a time: ``reset(seed)``, then ``step(action)`` until done.

    Args:
        config: Geometry and limits; the defaults give 32x32 images and 30-step episodes.
    """

    def __init__(self, config: TabletopConfig | None = None) -> None:
        self.config = config or TabletopConfig()
        self.objects: tuple[SceneObject, ...] = ()
        self.target_index = -1
        self.instruction = ""
        self.steps = 0
        self.done = True
        self._position = np.zeros(2)
        self._background = np.zeros((3, self.config.image_size, self.config.image_size), dtype=np.uint8)

    @property
    def target(self) -> np.ndarray:
        """``(2,)`` float64 centre of the target object."""
        item = self.objects[self.target_index]
        return np.array([item.x, item.y])

    @property
    def position(self) -> np.ndarray:
        """``(2,)`` float64 end-effector position (a copy)."""
        return self._position.copy()

    def reset(self, seed: int) -> Observation:
        """Draw a new scene, instruction and start position from ``seed`` (a non-negative int)."""
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        count = int(rng.integers(self.config.min_objects, self.config.max_objects + 1))
        self.objects = self._place_objects(rng, count)
        self.target_index = int(rng.integers(count))
        self.instruction = self._describe(rng)
        while True:  # rejection sampling; START_DISTANCE < 1 keeps the acceptance rate high
            self._position = rng.uniform(-0.9, 0.9, size=2)
            if np.linalg.norm(self._position - self.target) >= START_DISTANCE:
                break
        self._background = self._paint(rng)
        self.steps, self.done = 0, False
        return self.observe()

    def step(self, action: Any) -> tuple[Observation, bool, bool]:
        """Apply ``(dx, dy)`` (clipped to ``[-1, 1]``); return ``(observation, success, done)``."""
        if self.done:
            raise RuntimeError("the episode is over (or never started): call reset(seed) before step()")
        move = np.clip(as_action(action), -1.0, 1.0) * self.config.max_step
        self._position = np.clip(self._position + move, -1.0, 1.0)
        self.steps += 1
        success = bool(np.linalg.norm(self._position - self.target) <= self.config.success_radius)
        self.done = success or self.steps >= self.config.max_steps
        return self.observe(), success, self.done

    def observe(self) -> Observation:
        """The current observation: the cached scene with the end effector drawn on top."""
        image = self._background.copy()  # (3, H, W)
        size = self.config.image_size
        row, col = to_pixel(self._position, size)
        arm = max(1, size // 32)  # cross arm length in pixels, so the cross stays visible on big images
        image[:, max(0, row - arm) : row + arm + 1, col] = WHITE
        image[:, row, max(0, col - arm) : col + arm + 1] = WHITE
        state = torch.from_numpy(self._position.astype(np.float32))
        target = torch.from_numpy(self.target.astype(np.float32))
        return Observation(torch.from_numpy(image), state, self.instruction, target)

    def _place_objects(self, rng: np.random.Generator, count: int) -> tuple[SceneObject, ...]:
        radius = self.config.object_radius
        bound = 1 - radius - 0.05  # keep every object fully on the table
        pairs = [(colour, kind) for colour in COLOURS for kind in KINDS]
        chosen = rng.choice(len(pairs), size=count, replace=False)  # distinct pairs: colour+shape is unique
        for _ in range(100):
            centres = rng.uniform(-bound, bound, size=(count, 2))  # (count, 2)
            gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)  # (count, count)
            np.fill_diagonal(gaps, np.inf)
            if gaps.min() >= 2 * radius + 0.1:  # no overlap, so every object is visible whole
                return tuple(
                    SceneObject(pairs[pair][0], pairs[pair][1], float(x), float(y))
                    for pair, (x, y) in zip(chosen, centres, strict=True)
                )
        raise ValueError(f"could not place {count} objects of radius {radius} apart; lower object_radius")

    def _describe(self, rng: np.random.Generator) -> str:
        target = self.objects[self.target_index]
        phrases = [f"{target.colour} {target.kind}"]
        if sum(item.colour == target.colour for item in self.objects) == 1:
            phrases.append(f"{target.colour} object")
        if sum(item.kind == target.kind for item in self.objects) == 1:
            phrases.append(target.kind)
        return f"{VERBS[rng.integers(len(VERBS))]} the {phrases[rng.integers(len(phrases))]}"

    def _paint(self, rng: np.random.Generator) -> np.ndarray:
        size = self.config.image_size
        canvas = rng.normal(BACKGROUND, 6.0, size=(size, size, 3))  # (H, W, 3)
        for item in self.objects:
            colour = np.array(COLOURS[item.colour]) + rng.normal(0.0, 8.0, size=3)
            canvas[object_mask(item, self.config.object_radius, size)] = colour
        return np.ascontiguousarray(np.clip(canvas, 0, 255).astype(np.uint8).transpose(2, 0, 1))  # (3, H, W)
