"""Every recipe runs through the real CLI; checkpoints alone can predict; bf16-mixed works on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from modal_tf.cli import list_recipes, main, recipe_description
from modal_tf.lit import ModalModule

FAST = [
    "--trainer.max_steps=3",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def run_cli(tmp_path: Path, *args: str) -> None:
    main([*args, *FAST, f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}"])


def last_checkpoint(tmp_path: Path) -> Path:
    found = sorted(tmp_path.glob("**/last.ckpt"))
    assert found, f"no last.ckpt under {tmp_path}"
    return found[-1]


def test_recipes_exist_and_describe_themselves() -> None:
    recipes = list_recipes()
    assert any(path.name == "who_did_it.yaml" for path in recipes)
    assert all(recipe_description(path) for path in recipes)


SMALL_DATA = {"num_train": 64, "num_eval": 16, "num_val": 16, "num_test": 16, "num_episodes": 8, "num_eval_episodes": 2}


def real_data_overrides(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Point real-data recipes at files fabricated in their real format (never a download)."""
    from test_datamodules import fabricate_cifar10, fabricate_speech_commands

    data = yaml.safe_load(recipe.read_text())["data"]["init_args"]
    if data.get("source") == "speech_commands":
        fabricate_speech_commands(tmp_path / "data")
        return [f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.download=false"]
    if data.get("source") == "cifar10":
        from torchvision.datasets import cifar

        fabricate_cifar10(tmp_path / "data")
        monkeypatch.setattr(cifar, "check_integrity", lambda *args: True)  # md5s belong to the real files
        return [f"--data.init_args.root={tmp_path / 'data'}", "--data.init_args.download=false"]
    return [f"--data.init_args.{key}={value}" for key, value in SMALL_DATA.items() if key in data]


@pytest.mark.parametrize("recipe", list_recipes(), ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_recipe_runs_a_few_steps(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = real_data_overrides(recipe, tmp_path, monkeypatch)
    run_cli(tmp_path, "fit", "--config", str(recipe), "--trainer.max_epochs=1", *overrides)
    assert last_checkpoint(tmp_path).is_file()


def test_checkpoint_alone_predicts(tmp_path: Path) -> None:
    recipe = next(path for path in list_recipes() if path.name == "who_did_it.yaml")
    run_cli(tmp_path, "fit", "--config", str(recipe))
    checkpoint = last_checkpoint(tmp_path)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)  # plain types only
    assert raw["hyper_parameters"]["shape"] == "encoder_only"
    model = ModalModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert model.task is not None
    tokenizer = model.task.inputs["text"]
    batch = {"inputs": {"text": tokenizer.collate([tokenizer.encode("Tom hit Jerry."), tokenizer.encode("Hi")])}}
    predictions = model.predict_step(batch, 0)
    assert len(predictions) == 2 and set(predictions) <= {"Tom", "Jerry"}

    run_cli(
        tmp_path, "predict", "--config", str(recipe), f"--ckpt_path={checkpoint}", "--trainer.limit_predict_batches=2"
    )
    written = next(tmp_path.glob("**/predictions.jsonl")).read_text().splitlines()
    assert len(written) == 2 * 64  # two batches of the recipe's batch size
    assert {json.loads(line)["prediction"] for line in written} <= {"Tom", "Jerry"}


@pytest.mark.parametrize("shape", ["decoder_only", "encoder_decoder"])
def test_seq2seq_through_the_cli_with_generation_metrics(shape: str, tmp_path: Path) -> None:
    run_cli(
        tmp_path,
        "fit",
        f"--model.shape={shape}",
        "--model.transformer.dim=32",
        "--model.transformer.depth=1",
        "--model.transformer.num_heads=2",
        "--model.generation.max_new_tokens=8",
        "--data=helpers.ReverseWords",
        "--data.batch_size=8",
        "--trainer.limit_train_batches=2",
        "--trainer.max_epochs=1",
    )
    checkpoint = last_checkpoint(tmp_path)
    main(
        [
            "test",
            f"--model.shape={shape}",
            "--model.transformer.dim=32",
            "--model.transformer.depth=1",
            "--model.transformer.num_heads=2",
            "--model.generation.max_new_tokens=8",
            "--data=helpers.ReverseWords",
            f"--ckpt_path={checkpoint}",
            *FAST,
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    metrics = "".join(path.read_text() for path in tmp_path.glob("**/metrics.csv"))
    model = ModalModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert model.task is not None and model.task.target is not None
    batch = {"inputs": {"text": model.task.inputs["text"].collate([model.task.inputs["text"].encode("abc")])}}
    assert isinstance(model.predict_step(batch, 0)[0], str)
    assert "val/exact_match" in metrics and "test/exact_match" in metrics and "test/cer" in metrics


@pytest.mark.usefixtures("slow_reduced_precision")  # an AVX2-only CPU, whatever this one is
def test_bf16_mixed_trains_on_cpu_and_warns_where_bf16_kernels_are_slow(tmp_path: Path) -> None:
    recipe = next(path for path in list_recipes() if path.name == "who_did_it.yaml")
    warning = r"trainer.precision='bf16-mixed' on a CPU where torch has no fast bfloat16.*on fp32 kernels here"
    with pytest.warns(UserWarning, match=warning) as caught:
        run_cli(tmp_path, "fit", "--config", str(recipe), "--trainer.precision=bf16-mixed")
    assert sum("no fast bfloat16" in str(w.message) for w in caught) == 1, "one warning per run"
    checkpoint = torch.load(last_checkpoint(tmp_path), map_location="cpu", weights_only=True)
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values() if value.is_floating_point())


def test_console_script_lists_recipes_and_tokenizers() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    script = Path(sys.executable).with_name("modal-tf")
    recipes = subprocess.run([str(script), "recipes"], capture_output=True, text=True, env=env, check=True)
    assert "who_did_it.yaml" in recipes.stdout and "who acted" in recipes.stdout
    tokenizers = subprocess.run([str(script), "tokenizers"], capture_output=True, text=True, env=env, check=True)
    assert "bytes" in tokenizers.stdout and "built-in" in tokenizers.stdout


def test_cli_rejects_unknown_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = next(path for path in list_recipes() if path.name == "who_did_it.yaml")
    with pytest.raises(SystemExit):
        run_cli(tmp_path, "fit", "--config", str(recipe), "--model.shape=rnn")
    error = capsys.readouterr().err
    assert "model.shape" in error and "rnn" in error and "encoder_decoder" in error


def test_demo_quick_runs_and_writes_a_summary(tmp_path: Path) -> None:
    import json

    main(["demo", "--quick", f"--output={tmp_path}"])
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [row["modality"] for row in rows] == ["text", "text", "vision", "audio", "robot"]
    assert all(0.0 <= row["value"] <= 1.0 for row in rows)
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
