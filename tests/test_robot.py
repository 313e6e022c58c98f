"""Robot demonstrations feed every model shape; a trained checkpoint acts closed-loop through ``modal-tf rollout``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modal_tf.cli import main
from modal_tf.data.episodes import make_demonstrations, save_episodes
from modal_tf.data.tabletop import Tabletop
from modal_tf.datamodules.robot import TabletopDemos
from modal_tf.export import pretrained_from_checkpoint
from modal_tf.robot.policy import ModelPolicy

ROOT = Path(__file__).resolve().parents[1]


def test_demonstrations_batch_into_three_inputs_and_action_tokens() -> None:
    datamodule = TabletopDemos(num_episodes=4, num_eval_episodes=2, chunk=3, batch_size=4)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch["inputs"]) == {"image", "instruction", "state"}
    assert batch["inputs"]["image"].values.shape == (4, 64, 48)
    assert batch["target"].values.shape == (4, 3 * 2 + 2)  # bos + 3 steps x 2 dims + eos
    assert batch["target"].coords.shape == (4, 8, 2)  # (step, dim) coordinates


def test_demonstrations_from_an_npz_file(tmp_path: Path) -> None:
    save_episodes(make_demonstrations(6, seed=3, chunk=1).episodes, tmp_path / "demos.npz")
    datamodule = TabletopDemos(source=str(tmp_path / "demos.npz"), chunk=2, use_state=False, batch_size=2)
    datamodule.setup("fit")
    assert set(next(iter(datamodule.val_dataloader()))["inputs"]) == {"image", "instruction"}


def test_expert_noise_reaches_the_labels_and_is_validated() -> None:
    def first_actions(noise: float) -> list[np.ndarray]:
        datamodule = TabletopDemos(num_episodes=3, num_eval_episodes=1, chunk=1, expert_noise=noise)
        return [sample["target"].numpy() for sample in datamodule.build_splits()["train"]]

    clean, default = first_actions(0.0), first_actions(0.1)
    # the noise-free expert moves at full speed: its first action has a component of exactly +-1
    assert np.isclose(np.abs(clean[0]).max(), 1.0)
    assert not np.allclose(clean[0], default[0])  # same scene (same seed), different labels
    for bad in (-0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="expert_noise"):
            TabletopDemos(expert_noise=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("recipe", ["encoder_decoder_vla", "encoder_chunk"])
def test_trained_checkpoint_acts_closed_loop(tmp_path: Path, recipe: str) -> None:
    main(
        [
            "fit",
            "--config",
            str(ROOT / f"recipes/robot/{recipe}.yaml"),
            "--data.init_args.num_episodes=6",
            "--data.init_args.num_eval_episodes=2",
            "--trainer.max_steps=3",
            "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    checkpoint = next(tmp_path.glob("**/last.ckpt"))
    policy = ModelPolicy(pretrained_from_checkpoint(checkpoint))
    env = Tabletop()
    chunks = policy([env.reset(1), env.reset(3)])
    assert len(chunks) == 2
    assert all(chunk.ndim == 2 and chunk.shape[1] == 2 and np.isfinite(chunk).all() for chunk in chunks)
    assert main(["rollout", f"--ckpt={checkpoint}", "--episodes=3", "--max-steps=4", f"--out={tmp_path / 'eval'}"]) == 0
    summary = json.loads((tmp_path / "eval" / "rollout.json").read_text())
    assert [row["policy"] for row in summary["rows"]] == ["model", "expert", "random"]
    assert all(0.0 <= row["success_rate"] <= 1.0 for row in summary["rows"])
    assert (tmp_path / "eval" / "model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_policy_refuses_a_classifier(tmp_path: Path) -> None:
    main(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/text/who_did_it.yaml"),
            "--trainer.max_steps=1",
            "--trainer.enable_progress_bar=false",
            "--data.init_args.num_train=16",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    with pytest.raises(ValueError, match="this checkpoint classifies"):
        ModelPolicy(pretrained_from_checkpoint(next(tmp_path.glob("**/last.ckpt"))))
