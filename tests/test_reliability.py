"""Crash and resume bitwise, loud resume errors, atomic and pickle-free checkpoints, export, determinism."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modal_tf.checkpoints import load_checkpoint_file, save_checkpoint_file
from modal_tf.cli import main
from modal_tf.export import load_pretrained
from modal_tf.lit import ModalModule

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes/text/who_did_it.yaml")
TINY = [
    "--config",
    RECIPE,
    "--data.init_args.num_train=320",
    "--data.init_args.num_val=32",
    "--data.init_args.num_test=32",
    "--model.transformer.dropout=0.2",
    "--model.transformer.depth=1",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]  # 5 batches per epoch


def modal_tf_fit(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``modal-tf fit`` in a fresh process (so SIGKILL kills only it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1", "MODAL_TF_TRACEBACK": "1"}
    command = [str(Path(sys.executable).with_name("modal-tf")), "fit", *TINY]
    command += [f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.logger.init_args.name={name}", *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def final_weights(tmp_path: Path, name: str) -> dict[str, torch.Tensor]:
    """Weights after the last step (10) from the run's own end-of-epoch checkpoint."""
    return load_checkpoint_file(tmp_path / name / "checkpoints" / "epoch=1-step=10.ckpt")["state_dict"]


@pytest.mark.parametrize(
    ("kill_after", "every"),
    [(7, 3), (6, 5)],  # mid-epoch (last save at batch 6 of 10), and right after an end-of-epoch save (batch 5)
    ids=["mid-epoch", "end-of-epoch"],
)
def test_sigkill_then_resume_is_bitwise_identical(tmp_path: Path, kill_after: int, every: int) -> None:
    assert modal_tf_fit(tmp_path, "whole").returncode == 0
    crash = modal_tf_fit(
        tmp_path,
        "crash",
        "--trainer.callbacks+=helpers.KillAfter",
        f"--trainer.callbacks.batches={kill_after}",
        "--trainer.callbacks+=ModelCheckpoint",
        f"--trainer.callbacks.every_n_train_steps={every}",
        "--trainer.callbacks.save_last=true",
        f"--trainer.callbacks.dirpath={tmp_path / 'frequent'}",
    )
    assert crash.returncode == -9, crash.stderr[-2000:]  # SIGKILL: no cleanup ran
    saved = load_checkpoint_file(tmp_path / "frequent" / "last.ckpt")
    assert saved["modal_tf"]["batches_trained"] == (kill_after // every) * every
    resumed = modal_tf_fit(tmp_path, "crash", f"--ckpt_path={tmp_path / 'frequent' / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole, again = final_weights(tmp_path, "whole"), final_weights(tmp_path, "crash")
    assert whole.keys() == again.keys()
    assert all(torch.equal(whole[key], again[key]) for key in whole)


def test_resume_without_a_checkpoint_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no .*last\.ckpt to resume from"):
        main(["fit", *TINY, f"--trainer.logger.init_args.save_dir={tmp_path}", "--ckpt_path=last"])


def test_a_new_run_never_overwrites_an_old_one(tmp_path: Path) -> None:
    args = ["fit", *TINY, "--trainer.max_steps=2", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    main(args)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        main(args)


def test_console_script_prints_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MODAL_TF_TRACEBACK", None)
    command = [str(Path(sys.executable).with_name("modal-tf")), "fit", *TINY, "--ckpt_path=last"]
    command.append(f"--trainer.logger.init_args.save_dir={tmp_path}")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "modal-tf: error: --ckpt_path=last" in result.stderr and "Traceback" not in result.stderr


def test_interrupted_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.ckpt"
    save_checkpoint_file({"step": torch.tensor(1)}, path)

    def dies_halfway(obj: object, stream: object, *args: object, **kwargs: object) -> None:
        stream.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # the process is being killed

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_file({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]  # no temporary left behind


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {Payload.marker}",))

    marker = ""


def test_crafted_pickle_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    Payload.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, evil)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint_file(evil)
    with pytest.raises(ValueError, match="refusing to load"):
        ModalModule.from_checkpoint(str(evil))
    evil.write_bytes(pickle.dumps(Payload()))  # a bare pickle, not even a zip
    with pytest.raises(ValueError):
        load_checkpoint_file(evil)
    assert not Path(Payload.marker).exists()


def test_corrupt_and_missing_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint_file(tmp_path / "missing.ckpt")
    (tmp_path / "bad.ckpt").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint_file(tmp_path / "bad.ckpt")


def test_non_finite_loss_stops_with_the_step_or_skips(tmp_path: Path) -> None:
    args = ["fit", *TINY, "--trainer.callbacks+=helpers.PoisonAt", "--trainer.callbacks.batch=2"]
    with pytest.raises(FloatingPointError, match="non-finite training loss nan at global step 2"):
        main([*args, f"--trainer.logger.init_args.save_dir={tmp_path / 'raise'}"])
    main(
        [
            *args,
            "--model.nonfinite=skip",
            "--trainer.max_steps=3",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'skip'}",
        ]
    )


@pytest.mark.parametrize("shape", ["encoder_only", "encoder_decoder"])
def test_export_and_load_pretrained_give_identical_outputs(tmp_path: Path, shape: str) -> None:
    extra = ["--data=helpers.ReverseWords", "--model.generation.max_new_tokens=6"] if shape != "encoder_only" else []
    main(
        [
            "fit",
            *TINY,
            "--trainer.max_steps=2",
            f"--model.shape={shape}",
            *extra,
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    checkpoint = next(tmp_path.glob("**/last.ckpt"))
    module = ModalModule.from_checkpoint(str(checkpoint))
    main(["export", f"--ckpt={checkpoint}", f"--out={tmp_path / 'export'}"])
    pretrained = load_pretrained(tmp_path / "export")
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"model.safetensors", "config.json", "tokenizers.json"}
    tokenizer = pretrained.task.inputs["text"]
    inputs = {"text": tokenizer.collate([tokenizer.encode("Tom hit Jerry."), tokenizer.encode("ab")])}
    with torch.no_grad():
        if shape == "encoder_only":
            torch.testing.assert_close(pretrained.model(inputs), module.net(inputs), rtol=0, atol=0)  # type: ignore[misc]
        else:
            target = pretrained.task.target
            assert target is not None
            prompt = target.collate([target.encode_prompt(), target.encode_prompt()])
            ours = pretrained.model.generate(inputs, prompt, pretrained.generation)  # type: ignore[operator]
            theirs = module.net.generate(inputs, prompt, pretrained.generation)  # type: ignore[union-attr]
            assert torch.equal(ours.tokens, theirs.tokens)


def test_two_runs_give_identical_metrics(tmp_path: Path) -> None:
    for name in ("a", "b"):
        main(
            [
                "fit",
                *TINY,
                "--trainer.log_every_n_steps=1",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
                f"--trainer.logger.init_args.name={name}",
            ]
        )
    first, second = ((tmp_path / name / "metrics.csv").read_text() for name in ("a", "b"))
    assert first == second and "val/acc" in first


def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """``trainer.strategy=ddp`` with ``devices=2`` (gloo) trains a recipe end to end."""
    result = modal_tf_fit(
        tmp_path,
        "ddp",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = load_checkpoint_file(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 3  # 320 samples / (2 ranks x 64) rounded up


def test_compile_callback_trains_like_eager_and_checkpoints_stay_eager(tmp_path: Path) -> None:
    """``CompileModel`` compiles the net in place: the eager checkpoint keys, weights close to an eager run's."""
    from torch._dynamo.utils import counters

    common = [*TINY, "--model.transformer.dropout=0.0", "--trainer.max_steps=3"]  # no dropout: RNG streams differ
    torch._dynamo.reset()
    counters.clear()
    compile_callback = "--trainer.callbacks+=modal_tf.lit.CompileModel"
    main(["fit", *common, compile_callback, f"--trainer.logger.init_args.save_dir={tmp_path / 'c'}"])
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    main(["fit", *common, f"--trainer.logger.init_args.save_dir={tmp_path / 'e'}"])
    compiled, eager = (next((tmp_path / run).glob("**/last.ckpt")) for run in ("c", "e"))
    weights, reference = (load_checkpoint_file(path)["state_dict"] for path in (compiled, eager))
    assert weights.keys() == reference.keys()
    for key, value in weights.items():
        expected = reference[key]
        if key.endswith("attn.qkv.bias"):  # the key bias has a zero gradient (softmax ignores a per-row shift), so
            value, expected = value.view(3, -1)[0::2], expected.view(3, -1)[0::2]  # AdamW follows round-off: q, v
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5, msg=key)
    ModalModule.from_checkpoint(str(compiled))  # strict load into an eager module


def test_compile_callback_refuses_bad_arguments_and_modules_without_a_net() -> None:
    from lightning.pytorch import LightningModule

    from modal_tf.lit import CompileModel

    with pytest.raises(ValueError, match=r"CompileModel\.mode must be one of .* got 'fast'"):
        CompileModel(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"CompileModel\.dynamic"):
        CompileModel(dynamic="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got LightningModule with net=NoneType"):
        CompileModel().compile(LightningModule())
