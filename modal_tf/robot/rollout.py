"""Closed-loop evaluation of any policy on held-out tabletop scenes, with trajectory plots.

Notation: N parallel episodes (the unfinished ones at a step), K steps in a returned action chunk,
E actions executed per chunk, H x W image pixels.

A policy is any callable ``(observations: list[Observation]) -> sequence of N action chunks``, each
``(K, 2)`` (numpy array, tensor or nested list; K may differ per chunk). ``evaluate`` runs all episodes
in lockstep and calls the policy once per step with every episode whose action queue is empty, so a
batched model runs one forward pass per step. Receding horizon: the first ``execute`` actions of each
chunk are queued and run before the episode is planned again (ACT's temporal ensembling is not done,
https://arxiv.org/abs/2304.13705); ``execute=1`` re-plans every step.

Evaluation scenes come from the "eval" split of ``episode_seed`` (odd environment seeds), disjoint
from the "demo" split that demonstrations are recorded on (even seeds).
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from torch import Tensor

from modal_tf.atomic import atomic_write
from modal_tf.data.tabletop import (
    DEFAULT_EXPERT_NOISE,
    Observation,
    Tabletop,
    TabletopConfig,
    episode_seed,
    expert_plan,
)

Policy = Callable[[list[Observation]], Sequence[Any]]


@dataclass(frozen=True)
class Trajectory:
    """One evaluated episode.

    Attributes:
        seed: Environment seed (``Tabletop().reset(seed)`` replays the scene).
        instruction: The task in words.
        first_image: ``(3, H, W)`` uint8 first observation.
        positions: ``(steps + 1, 2)`` end-effector path, start included.
        target: ``(2,)`` target centre.
        success: Whether the target was reached within the step limit.
    """

    seed: int
    instruction: str
    first_image: Tensor
    positions: np.ndarray
    target: np.ndarray
    success: bool

    @property
    def steps(self) -> int:
        """Actions executed."""
        return len(self.positions) - 1


@dataclass(frozen=True)
class RolloutReport:
    """Outcome of ``evaluate``: every trajectory and the configuration they ran under."""

    trajectories: tuple[Trajectory, ...]
    config: TabletopConfig
    execute: int

    @property
    def success_rate(self) -> float:
        """Fraction of episodes that reached their target."""
        return sum(trajectory.success for trajectory in self.trajectories) / len(self.trajectories)

    @property
    def mean_steps_to_success(self) -> float:
        """Mean actions taken by successful episodes; NaN when none succeeded."""
        steps = [trajectory.steps for trajectory in self.trajectories if trajectory.success]
        return float(np.mean(steps)) if steps else math.nan

    def summary(self) -> str:
        """One line: success rate, count and mean steps to success."""
        wins = sum(trajectory.success for trajectory in self.trajectories)
        return (
            f"success {self.success_rate:.1%} ({wins}/{len(self.trajectories)}), "
            f"mean steps to success {self.mean_steps_to_success:.1f} of max {self.config.max_steps}"
        )


def expert_policy(
    chunk: int = 1, noise: float = DEFAULT_EXPERT_NOISE, seed: int = 0, config: TabletopConfig | None = None
) -> Policy:
    """The scripted expert as a policy: ``chunk``-step open-loop plans from the privileged target."""
    max_step = (config or TabletopConfig()).max_step
    rng = np.random.default_rng(seed)

    def act(observations: list[Observation]) -> list[np.ndarray]:
        positions = torch.stack([observation.state for observation in observations]).double().numpy()  # (N, 2)
        targets = torch.stack([observation.target for observation in observations]).double().numpy()  # (N, 2)
        return list(expert_plan(positions, targets, chunk, max_step, rng, noise))  # N x (K, 2)

    return act


def random_policy(chunk: int = 1, seed: int = 0) -> Policy:
    """Uniform actions in ``[-1, 1]``: the floor any learned policy must clear."""
    rng = np.random.default_rng(seed)

    def act(observations: list[Observation]) -> list[np.ndarray]:
        return list(rng.uniform(-1.0, 1.0, size=(len(observations), chunk, 2)))  # N x (K, 2)

    return act


def _as_chunk(chunk: Any, index: int) -> np.ndarray:
    """Validate policy output ``index`` and return it as float64 ``(K, 2)``."""
    if isinstance(chunk, Tensor):
        chunk = chunk.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"policy output {index} must be a numeric (K, 2) action chunk: {error}") from None
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"policy output {index} must be an action chunk of shape (K >= 1, 2), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"policy output {index} must be finite, got {array.tolist()}")
    return array


def evaluate(
    policy: Policy,
    num_episodes: int = 50,
    seed: int = 0,
    max_steps: int = 30,
    execute: int = 1,
    config: TabletopConfig | None = None,
) -> RolloutReport:
    """Run ``policy`` closed-loop on ``num_episodes`` held-out scenes in lockstep.

    Args:
        policy: Maps N observations to N action chunks ``(K, 2)``.
        num_episodes: Episodes, all run in parallel.
        seed: Base seed of the "eval" split.
        max_steps: Step limit per episode (overrides ``config.max_steps``).
        execute: Actions of each chunk run before re-planning (fewer if the chunk is shorter).
        config: Tabletop geometry; defaults to ``TabletopConfig()``.
    """
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    if not isinstance(execute, int) or execute < 1:
        raise ValueError(f"execute must be a positive int, got {execute!r}")
    config = replace(config or TabletopConfig(), max_steps=max_steps)
    envs = [Tabletop(config) for _ in range(num_episodes)]
    seeds = [episode_seed("eval", seed, index) for index in range(num_episodes)]
    observations = [env.reset(env_seed) for env, env_seed in zip(envs, seeds, strict=True)]
    first_images = [observation.image for observation in observations]
    paths = [[env.position] for env in envs]
    queues: list[deque[np.ndarray]] = [deque() for _ in envs]
    successes = [False] * num_episodes
    while active := [index for index, env in enumerate(envs) if not env.done]:
        planning = [index for index in active if not queues[index]]
        if planning:
            chunks = policy([observations[index] for index in planning])
            if len(chunks) != len(planning):
                raise ValueError(f"policy returned {len(chunks)} action chunks for {len(planning)} observations")
            for position, (index, chunk) in enumerate(zip(planning, chunks, strict=True)):
                queues[index].extend(_as_chunk(chunk, position)[:execute])
        for index in active:
            observations[index], successes[index], _ = envs[index].step(queues[index].popleft())
            paths[index].append(envs[index].position)
    trajectories = tuple(
        Trajectory(env_seed, env.instruction, image, np.stack(path), env.target, success)
        for env_seed, env, image, path, success in zip(seeds, envs, first_images, paths, successes, strict=True)
    )
    return RolloutReport(trajectories, config, execute)


def plot_trajectories(report: RolloutReport, path: str | Path, max_episodes: int = 6, columns: int = 3) -> None:
    """Save a PNG grid of the first ``max_episodes`` paths drawn over each episode's first frame."""
    shown = report.trajectories[:max_episodes]
    if not shown:
        raise ValueError("the report holds no trajectories to plot")
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(3 * min(columns, len(shown)), 3.5 * rows))
    FigureCanvasAgg(figure)  # attaches an Agg canvas: no pyplot, no global backend switch
    for number, trajectory in enumerate(shown):
        axes = figure.add_subplot(rows, min(columns, len(shown)), number + 1)
        # extent puts image row 0 at y = +1, matching the world's y-up convention
        axes.imshow(trajectory.first_image.permute(1, 2, 0).numpy(), extent=(-1, 1, -1, 1))  # (H, W, 3)
        axes.add_patch(Circle(tuple(trajectory.target), report.config.success_radius, fill=False, color="white"))
        axes.plot(trajectory.positions[:, 0], trajectory.positions[:, 1], "-o", color="cyan", markersize=2)
        axes.plot(*trajectory.positions[-1], "x", color="magenta", markersize=8)
        outcome = f"reached in {trajectory.steps}" if trajectory.success else f"failed ({trajectory.steps} steps)"
        axes.set_title(f"{trajectory.instruction}\n{outcome}", fontsize=8)
        axes.set_xlim(-1, 1)
        axes.set_ylim(-1, 1)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write(path, lambda stream: stream.write(buffer.getvalue()))
