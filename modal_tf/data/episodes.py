"""Demonstration episodes: expert recording, action-chunk samples and NPZ files (LeRobot: ``data.lerobot``).

Notation: T steps in an episode, N steps over all episodes, E episodes, K chunk length,
S state dims, A action dims (both 2 on the tabletop), H x W image pixels.

An ``Episode`` keeps one row per action taken: the observation the action was chosen from and the
action (the observation after the last action is dropped), so a Gato-style decoder
(https://arxiv.org/abs/2205.06175) trains on the interleaved sequence. ``chunk_samples`` cuts episodes
into per-step samples holding the next K actions (RT-2 https://arxiv.org/abs/2307.15818 predicts
K = 1, ACT K > 1); past an episode's end the chunk
is padded with **zero actions** ("stay", which is what a robot that has arrived should do) and
``valid`` marks the real ones, so a loss can drop the padding as ACT does
(https://arxiv.org/abs/2304.13705).

NPZ layout (``save_episodes``; read back with ``allow_pickle=False``, nothing is pickled):
    format         ()            str    "modal_tf.episodes/1"
    images         (N, 3, H, W)  uint8  absent when the episodes have no images
    states         (N, S)        float32
    actions        (N, A)        float32
    episode_index  (N,)          int64  0..E-1, rows grouped by episode
    frame_index    (N,)          int64  0..T-1 within each episode
    instructions   (E,)          str    fixed-width unicode array, one per episode
    success        (E,)          bool
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from modal_tf.atomic import atomic_write
from modal_tf.data.tabletop import DEFAULT_EXPERT_NOISE, Tabletop, TabletopConfig, episode_seed, expert_plan

FORMAT = "modal_tf.episodes/1"
ROW_KEYS = ("states", "actions", "episode_index", "frame_index")
EPISODE_KEYS = ("instructions", "success")


@dataclass(frozen=True)
class Episode:
    """One demonstration: T observations and the action taken after each.

    Attributes:
        instruction: The task in words.
        images: ``(T, 3, H, W)`` uint8, or None for state-only data (e.g. LeRobot video datasets).
        states: ``(T, S)`` float32 proprioceptive states.
        actions: ``(T, A)`` float32 actions, ``actions[t]`` taken after seeing step ``t``.
        success: Whether the episode ended by reaching its goal.
    """

    instruction: str
    images: Tensor | None
    states: Tensor
    actions: Tensor
    success: bool

    def __post_init__(self) -> None:
        steps = self.actions.shape[0]
        if self.states.ndim != 2 or self.actions.ndim != 2 or steps == 0:
            raise ValueError(
                f"episode needs states (T, S) and actions (T, A) with T >= 1, "
                f"got {tuple(self.states.shape)} and {tuple(self.actions.shape)}"
            )
        lengths = {"states": self.states.shape[0], "images": steps if self.images is None else self.images.shape[0]}
        if any(length != steps for length in lengths.values()):
            raise ValueError(f"episode has {steps} actions but lengths {lengths}; every row needs one action")
        if self.images is not None and (
            self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.is_floating_point()
        ):
            raise ValueError(
                f"episode images must be uint8 (T, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )

    def __len__(self) -> int:
        return self.actions.shape[0]


class ChunkSample(NamedTuple):
    """One training sample: an observation and the next K actions.

    Attributes:
        image: ``(3, H, W)`` uint8, or None for state-only episodes.
        state: ``(S,)`` float32.
        instruction: The episode's task.
        actions: ``(K, A)`` float32, zero-padded past the episode's end.
        valid: ``(K,)`` bool, False on padding.
        episode_index: Which episode the sample comes from.
        frame_index: Step within that episode.
    """

    image: Tensor | None
    state: Tensor
    instruction: str
    actions: Tensor
    valid: Tensor
    episode_index: int
    frame_index: int


class Demonstrations(NamedTuple):
    """Whole episodes (for sequence models) and their per-step chunk samples (for chunking policies)."""

    episodes: list[Episode]
    samples: list[ChunkSample]


def record_episodes(
    num_episodes: int, seed: int, config: TabletopConfig | None = None, noise: float = DEFAULT_EXPERT_NOISE
) -> list[Episode]:
    """Run the noisy scripted expert closed-loop on ``num_episodes`` demonstration-split scenes."""
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    env = Tabletop(config)
    episodes = []
    for index in range(num_episodes):
        env_seed = episode_seed("demo", seed, index)
        observation = env.reset(env_seed)
        rng = np.random.default_rng([env_seed, 1])  # the expert's noise: its own stream, same seed
        images, states, actions, success, done = [], [], [], False, False
        while not done:
            action = expert_plan(env.position[None], env.target[None], 1, env.config.max_step, rng, noise)[0, 0]
            images.append(observation.image)
            states.append(observation.state)
            actions.append(torch.from_numpy(action.astype(np.float32)))
            observation, success, done = env.step(action)
        episodes.append(
            Episode(env.instruction, torch.stack(images), torch.stack(states), torch.stack(actions), success)
        )
    return episodes


def chunk_samples(episodes: list[Episode], chunk: int) -> list[ChunkSample]:
    """One sample per step of every episode, with the next ``chunk`` actions (zero-padded, see module doc)."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    samples = []
    for episode_index, episode in enumerate(episodes):
        steps, dims = episode.actions.shape
        padded = torch.cat([episode.actions, episode.actions.new_zeros(chunk - 1, dims)])  # (T + K - 1, A)
        # contiguous: unfold's windows overlap in memory, and samples must not alias one another
        windows = padded.unfold(0, chunk, 1).transpose(1, 2).contiguous()  # (T, A, K) -> (T, K, A)
        valid = (torch.arange(steps)[:, None] + torch.arange(chunk)[None, :]) < steps  # (T, K)
        for frame in range(steps):
            image = None if episode.images is None else episode.images[frame]
            samples.append(
                ChunkSample(
                    image,
                    episode.states[frame],
                    episode.instruction,
                    windows[frame],
                    valid[frame],
                    episode_index,
                    frame,
                )
            )
    return samples


def make_demonstrations(
    num_episodes: int,
    seed: int,
    chunk: int,
    config: TabletopConfig | None = None,
    noise: float = DEFAULT_EXPERT_NOISE,
) -> Demonstrations:
    """Record ``num_episodes`` expert episodes (demo-split seeds) and cut them into ``chunk``-action samples."""
    episodes = record_episodes(num_episodes, seed, config, noise)
    return Demonstrations(episodes, chunk_samples(episodes, chunk))


def save_episodes(episodes: list[Episode], path: str | Path) -> None:
    """Write ``episodes`` to one NPZ file in the documented layout, atomically."""
    if not episodes:
        raise ValueError("save_episodes needs at least one episode, got an empty list")
    with_images = [episode.images is not None for episode in episodes]
    if any(with_images) and not all(with_images):
        raise ValueError("either every episode has images or none has; got a mix")
    arrays: dict[str, Any] = {  # Any: numpy types savez_compressed(**kwds) as bool, after its allow_pickle
        "format": np.array(FORMAT),
        "states": torch.cat([episode.states for episode in episodes]).numpy().astype(np.float32),
        "actions": torch.cat([episode.actions for episode in episodes]).numpy().astype(np.float32),
        "episode_index": np.concatenate([np.full(len(episode), index) for index, episode in enumerate(episodes)]),
        "frame_index": np.concatenate([np.arange(len(episode)) for episode in episodes]),
        "instructions": np.array([episode.instruction for episode in episodes], dtype=str),
        "success": np.array([episode.success for episode in episodes], dtype=bool),
    }
    if all(with_images):
        arrays["images"] = torch.cat([episode.images for episode in episodes if episode.images is not None]).numpy()
    atomic_write(path, lambda stream: np.savez_compressed(stream, **arrays))


def load_episodes(path: str | Path) -> list[Episode]:
    """Read episodes written by ``save_episodes`` (``allow_pickle=False``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an NPZ file, a different format, missing arrays or inconsistent shapes.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"episodes file not found: {file}")
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{file} is not a readable episodes NPZ file ({type(error).__name__}: {error})") from None
    missing = [key for key in ("format", *ROW_KEYS, *EPISODE_KEYS) if key not in arrays]
    if missing:
        raise ValueError(f"{file} lacks arrays {missing}; found {sorted(arrays)}")
    if str(arrays["format"]) != FORMAT:
        raise ValueError(f"{file} has format {str(arrays['format'])!r}, expected {FORMAT!r}")
    return _split_rows(arrays, file)


def _split_rows(arrays: dict[str, np.ndarray], file: Path) -> list[Episode]:
    rows = arrays["actions"].shape[0]
    row_keys = [*ROW_KEYS, "images"] if "images" in arrays else list(ROW_KEYS)
    lengths = {key: arrays[key].shape[0] for key in row_keys}
    if any(length != rows for length in lengths.values()) or arrays["states"].ndim != 2:
        raise ValueError(f"{file}: every per-step array needs the same number of rows, got {lengths}")
    episode_index, frame_index = arrays["episode_index"], arrays["frame_index"]
    count = len(arrays["instructions"])
    starts = np.flatnonzero(frame_index == 0)  # (E,) first row of each episode
    expected = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, rows)))  # (N,) 0,0,..,1,1,..
    if len(starts) != count or not np.array_equal(episode_index, expected) or len(arrays["success"]) != count:
        raise ValueError(f"{file}: episode_index must run 0..{count - 1} in blocks starting at frame_index 0")
    episodes = []
    for index, (start, stop) in enumerate(zip(starts, np.append(starts[1:], rows), strict=True)):
        if not np.array_equal(frame_index[start:stop], np.arange(stop - start)):
            raise ValueError(f"{file}: episode {index} frame_index is not 0..{stop - start - 1}")
        images = torch.from_numpy(arrays["images"][start:stop]) if "images" in arrays else None
        states = torch.from_numpy(arrays["states"][start:stop].astype(np.float32))
        actions = torch.from_numpy(arrays["actions"][start:stop].astype(np.float32))
        episodes.append(
            Episode(str(arrays["instructions"][index]), images, states, actions, bool(arrays["success"][index]))
        )
    return episodes
