"""Tabletop simulator, scripted expert, demonstration files (NPZ, LeRobot parquet) and closed-loop evaluation."""

from __future__ import annotations

import importlib.util
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from modal_tf.data.episodes import (
    Episode,
    chunk_samples,
    load_episodes,
    make_demonstrations,
    save_episodes,
)
from modal_tf.data.lerobot import load_lerobot
from modal_tf.data.shapes import COLOURS, KINDS
from modal_tf.data.tabletop import Observation, Tabletop, TabletopConfig, episode_seed, to_pixel
from modal_tf.robot import evaluate, expert_policy, plot_trajectories, random_policy


def rollout(env: Tabletop, seed: int, actions: np.ndarray) -> list[Observation]:
    """Reset to ``seed`` and apply ``actions`` until done; every observation, the first included."""
    observations = [env.reset(seed)]
    for action in actions:
        observation, _, done = env.step(action)
        observations.append(observation)
        if done:
            break
    return observations


def test_reset_and_step_are_deterministic_per_seed() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, size=(10, 2))
    first, second = rollout(Tabletop(), 11, actions), rollout(Tabletop(), 11, actions)
    for one, two in zip(first, second, strict=True):
        assert torch.equal(one.image, two.image) and torch.equal(one.state, two.state)
        assert one.instruction == two.instruction
    other = Tabletop().reset(12)
    assert not torch.equal(other.image, first[0].image)


def test_observation_types_and_end_effector_is_drawn() -> None:
    env = Tabletop(TabletopConfig(image_size=48))
    observation = env.reset(3)
    assert observation.image.shape == (3, 48, 48) and observation.image.dtype == torch.uint8
    assert observation.state.shape == (2,) and observation.state.dtype == torch.float32
    row, col = to_pixel(env.position, 48)
    assert observation.image[:, row, col].tolist() == [255, 255, 255]
    target = env.objects[env.target_index]
    row, col = to_pixel(env.target, 48)  # the target's centre pixel shows the target's colour
    assert np.abs(observation.image[:, row, col].numpy() - np.array(COLOURS[target.colour])).max() < 50


def matching(instruction: str, env: Tabletop) -> list[int]:
    """Indices of the objects an instruction's colour and shape words fit."""
    words = instruction.split()
    colours = [word for word in words if word in COLOURS]
    kinds = [word for word in words if word in KINDS]
    return [
        index
        for index, item in enumerate(env.objects)
        if all(item.colour == colour for colour in colours) and all(item.kind == kind for kind in kinds)
    ]


def test_instruction_names_exactly_the_target() -> None:
    env, styles = Tabletop(), set()
    for seed in range(300):
        observation = env.reset(seed)
        assert matching(observation.instruction, env) == [env.target_index], (observation.instruction, env.objects)
        words = set(observation.instruction.split())
        styles.add((bool(words & set(COLOURS)), bool(words & set(KINDS))))
        assert 2 <= len(env.objects) <= 4
    assert styles == {(True, True), (True, False), (False, True)}  # colour+shape, colour only, shape only


def test_actions_are_clipped_and_scaled() -> None:
    env = Tabletop()
    env.reset(5)
    start = env.position
    env.step(np.array([5.0, -7.0]))
    moved = env.position - start
    expected = np.clip(start + np.array([0.15, -0.15]), -1, 1) - start
    np.testing.assert_allclose(moved, expected, atol=1e-12)
    for _ in range(10):  # pushing into a wall keeps the end effector on the table
        observation, _, done = env.step([1.0, 1.0])
        if done:
            break
    assert observation.state.abs().max() <= 1.0


@pytest.mark.parametrize("action", [[float("nan"), 0.0], [0.0, float("inf")], torch.tensor([0.0, -float("inf")])])
def test_non_finite_actions_are_rejected(action: Any) -> None:
    env = Tabletop()
    env.reset(0)
    with pytest.raises(ValueError, match="finite"):
        env.step(action)


@pytest.mark.parametrize("action", [[0.1, 0.2, 0.3], [[0.1, 0.2]], 0.5])
def test_wrong_action_shape_names_expected_and_received(action: Any) -> None:
    env = Tabletop()
    env.reset(0)
    received = str(np.asarray(action).shape)
    with pytest.raises(ValueError, match=r"\(2,\).*" + received.replace("(", r"\(").replace(")", r"\)")):
        env.step(action)


def test_bad_seeds_configs_and_steps_after_done() -> None:
    with pytest.raises(ValueError, match="seed"):
        Tabletop().reset(-1)
    with pytest.raises(ValueError, match="max_objects"):
        TabletopConfig(min_objects=3, max_objects=2)
    with pytest.raises(TypeError, match="numeric"):
        env = Tabletop()
        env.reset(0)
        env.step(["left", "up"])
    env = Tabletop(TabletopConfig(max_steps=2))
    env.reset(0)
    env.step([0.0, 0.0])
    _, success, done = env.step([0.0, 0.0])
    assert done and not success
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0.0, 0.0])


def test_demo_and_eval_seeds_are_disjoint() -> None:
    demo = {episode_seed("demo", base, index) for base in range(5) for index in range(200)}
    held_out = {episode_seed("eval", base, index) for base in range(5) for index in range(200)}
    assert len(demo) == len(held_out) == 1000 and not demo & held_out
    report = evaluate(random_policy(), num_episodes=3, seed=2)
    assert {trajectory.seed for trajectory in report.trajectories} <= {episode_seed("eval", 2, i) for i in range(3)}


def test_expert_succeeds_and_random_policy_does_not() -> None:
    expert = evaluate(expert_policy(seed=0), num_episodes=50, seed=0)
    random = evaluate(random_policy(seed=0), num_episodes=50, seed=0)
    assert expert.success_rate >= 0.95, expert.summary()
    assert random.success_rate <= 0.3 and expert.success_rate - random.success_rate >= 0.6, random.summary()
    assert 1 <= expert.mean_steps_to_success < 15
    for trajectory in expert.trajectories:  # every path step is at most one clipped action long
        assert np.abs(np.diff(trajectory.positions, axis=0)).max() <= 0.15 + 1e-9


def test_evaluate_batches_chunks_and_replans_after_execute() -> None:
    calls: list[int] = []
    expert = expert_policy(chunk=8, noise=0.0)

    def counting(observations: list[Observation]) -> list[np.ndarray]:
        calls.append(len(observations))
        return expert(observations)

    report = evaluate(counting, num_episodes=12, seed=1, execute=3)
    assert calls[0] == 12  # one batched call for every episode at once
    assert len(calls) == max(-(-trajectory.steps // 3) for trajectory in report.trajectories)
    assert report.success_rate == 1.0
    replay = evaluate(expert_policy(chunk=8, noise=0.0), num_episodes=12, seed=1, execute=1)
    assert [t.success for t in replay.trajectories] == [t.success for t in report.trajectories]


def test_evaluate_rejects_bad_policy_output() -> None:
    with pytest.raises(ValueError, match="2 action chunks for 4"):
        evaluate(lambda observations: [np.zeros((1, 2))] * 2, num_episodes=4)
    with pytest.raises(ValueError, match=r"shape \(K >= 1, 2\), got shape \(3,\)"):
        evaluate(lambda observations: [np.zeros(3)] * len(observations), num_episodes=2)
    with pytest.raises(ValueError, match="finite"):
        evaluate(lambda observations: [np.full((2, 2), np.nan)] * len(observations), num_episodes=2)


def test_rollout_is_fast_and_deterministic() -> None:
    start = time.perf_counter()
    first = evaluate(random_policy(seed=3), num_episodes=100, seed=4)  # ~3,000 steps: most run all 30
    assert time.perf_counter() - start < 10.0  # measured ~0.3 s; generous for a loaded CI core
    second = evaluate(random_policy(seed=3), num_episodes=100, seed=4)
    for one, two in zip(first.trajectories, second.trajectories, strict=True):
        np.testing.assert_array_equal(one.positions, two.positions)


def test_trajectory_plot_is_a_png(tmp_path: Path) -> None:
    report = evaluate(expert_policy(), num_episodes=4, seed=0)
    path = tmp_path / "plots" / "paths.png"
    plot_trajectories(report, path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as picture:
        picture.verify()
        assert picture.size[0] > 100


def test_chunk_samples_shift_and_pad_with_zero_actions() -> None:
    demos = make_demonstrations(3, seed=0, chunk=5)
    assert len(demos.samples) == sum(len(episode) for episode in demos.episodes)
    assert all(episode.success for episode in demos.episodes)
    episode, samples = demos.episodes[0], [s for s in demos.samples if s.episode_index == 0]
    steps = len(episode)
    for sample in samples:
        frame = sample.frame_index
        real = min(5, steps - frame)
        assert sample.actions.shape == (5, 2) and sample.valid.tolist() == [True] * real + [False] * (5 - real)
        assert torch.equal(sample.actions[:real], episode.actions[frame : frame + real])
        assert not sample.actions[real:].any()
        assert torch.equal(sample.image, episode.images[frame]) and sample.instruction == episode.instruction
    with pytest.raises(ValueError, match="chunk"):
        chunk_samples(demos.episodes, 0)


def test_npz_round_trip_without_pickle(tmp_path: Path) -> None:
    episodes = make_demonstrations(4, seed=1, chunk=1).episodes
    path = tmp_path / "demos.npz"
    save_episodes(episodes, path)
    with np.load(path, allow_pickle=False) as archive:
        assert archive["images"].shape[1:] == (3, 32, 32) and archive["images"].dtype == np.uint8
        assert archive["instructions"].dtype.kind == "U" and archive["episode_index"].max() == 3
    loaded = load_episodes(path)
    assert len(loaded) == 4
    for original, copy in zip(episodes, loaded, strict=True):
        assert copy.instruction == original.instruction and copy.success == original.success
        assert copy.images is not None and original.images is not None and torch.equal(copy.images, original.images)
        assert torch.equal(copy.states, original.states) and torch.equal(copy.actions, original.actions)


def test_corrupt_or_missing_npz_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_episodes(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="not a readable episodes NPZ"):
        load_episodes(garbage)
    good = tmp_path / "good.npz"
    save_episodes(make_demonstrations(2, seed=0, chunk=1).episodes, good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable episodes NPZ"):
        load_episodes(truncated)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("modal_tf.episodes/1"), states=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable episodes NPZ"):
        load_episodes(pickled)
    partial = tmp_path / "partial.npz"
    with zipfile.ZipFile(good) as archive, zipfile.ZipFile(partial, "w") as copy:
        for name in archive.namelist():
            if name != "actions.npy":
                copy.writestr(name, archive.read(name))
    with pytest.raises(ValueError, match="lacks arrays \\['actions'\\]"):
        load_episodes(partial)


def write_lerobot(root: Path, episodes: list[Episode]) -> None:
    """Write ``episodes`` as a LeRobot v2.1 folder: info.json, tasks.jsonl, one parquet file per episode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks = sorted({episode.instruction for episode in episodes})
    features = {
        "observation.image": {"dtype": "image", "shape": [3, 32, 32], "names": ["channel", "height", "width"]},
        "observation.wrist": {"dtype": "video", "shape": [3, 32, 32], "names": ["channel", "height", "width"]},
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
        **{name: {"dtype": "int64", "shape": [1], "names": None} for name in ("frame_index", "episode_index", "index")},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": "v2.1",
        "robot_type": "tabletop",
        "total_episodes": len(episodes),
        "total_frames": sum(len(episode) for episode in episodes),
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "fps": 10,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    lines = [json.dumps({"task_index": index, "task": task}) for index, task in enumerate(tasks)]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    for index, episode in enumerate(episodes):
        steps = len(episode)
        order = np.arange(steps)[::-1].copy()  # rows stored in reverse: the loader must sort by frame_index
        pngs = []
        for frame in order:
            buffer = io.BytesIO()
            assert episode.images is not None
            Image.fromarray(episode.images[frame].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
            pngs.append({"bytes": buffer.getvalue(), "path": f"frame_{frame:06d}.png"})
        table = pa.table(
            {
                "observation.image": pa.array(pngs, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                "observation.state": pa.array(episode.states[order].tolist(), type=pa.list_(pa.float32())),
                "action": pa.array(episode.actions[order].tolist(), type=pa.list_(pa.float32())),
                "timestamp": pa.array(order / 10.0, type=pa.float32()),
                "frame_index": pa.array(order, type=pa.int64()),
                "episode_index": pa.array([index] * steps, type=pa.int64()),
                "index": pa.array(order + 1000 * index, type=pa.int64()),
                "task_index": pa.array([tasks.index(episode.instruction)] * steps, type=pa.int64()),
            }
        )
        path = root / "data" / "chunk-000" / f"episode_{index:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def test_lerobot_parquet_in_the_real_layout(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    episodes = make_demonstrations(3, seed=2, chunk=1).episodes
    write_lerobot(tmp_path / "dataset", episodes)
    loaded = load_lerobot(tmp_path / "dataset")
    assert len(loaded) == 3
    for original, copy in zip(episodes, loaded, strict=True):
        assert copy.instruction == original.instruction
        assert copy.images is not None and original.images is not None and torch.equal(copy.images, original.images)
        assert torch.equal(copy.states, original.states) and torch.equal(copy.actions, original.actions)
    state_only = load_lerobot(tmp_path / "dataset", image_key=None)
    assert state_only[0].images is None and torch.equal(state_only[0].actions, episodes[0].actions)
    with pytest.raises(ValueError, match="'video'"):
        load_lerobot(tmp_path / "dataset", image_key="observation.wrist")
    with pytest.raises(ValueError, match=r"feature 'observation\.joints' not in"):
        load_lerobot(tmp_path / "dataset", state_key="observation.joints")
    (tmp_path / "dataset" / "data" / "chunk-000" / "episode_000002.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="episode 2 of 3"):
        load_lerobot(tmp_path / "dataset")
    (tmp_path / "dataset" / "data" / "chunk-000" / "episode_000001.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(ValueError, match=r"episode_000001\.parquet is not a readable parquet file"):
        load_lerobot(tmp_path / "dataset")


def test_lerobot_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "pyarrow" else real(name))
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_lerobot(tmp_path)


def test_lerobot_missing_metadata_is_file_not_found(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    with pytest.raises(FileNotFoundError, match=r"info\.json"):
        load_lerobot(tmp_path)
