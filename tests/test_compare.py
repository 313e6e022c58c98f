"""``modal-tf compare``: the quick run writes well-formed results; costs, stems, data and verdicts are right."""

from __future__ import annotations

import csv
import json
import re
import shlex
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from modal_tf.compare import main
from modal_tf.compare.catalogue import CATALOGUE, VIT_SIZES, resolve_model
from modal_tf.compare.command import build_parser, config_from_args, resolved_command
from modal_tf.compare.config import Budget, CompareConfig, DataSettings
from modal_tf.compare.data import PreparedImages, prepare_data
from modal_tf.compare.harness import RunResult, build_module, quiet_lightning, train_run
from modal_tf.compare.measure import count_parameters, flops_per_image, images_per_second
from modal_tf.compare.summary import budget_caveat, last_epoch_gains, locality_verdict, summarize, sweep_points
from modal_tf.models.timm_stems import cifar_stem, small_stem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_DATA = DataSettings(num_train=24, num_eval=8, batch_size=8)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails on anything that is not a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def test_quick_run_writes_every_output_well_formed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--output", str(tmp_path), "--name", "smoke"]) == 0
    folder = tmp_path / "smoke"
    printed = capsys.readouterr().out
    assert "modal-tf compare --models vit_micro,resnet10t" in printed

    with (folder / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert sorted((row["model"], float(row["fraction"])) for row in runs) == [
        ("resnet10t", 0.5),
        ("resnet10t", 1.0),
        ("vit_micro", 0.5),
        ("vit_micro", 1.0),
    ]
    assert all(
        0.0 <= float(row["test_accuracy"]) <= 1.0 and int(row["steps"]) == int(row["planned_steps"]) == 3
        for row in runs
    )
    assert {int(row["train_images"]) for row in runs} == {24, 48}  # the fraction really shrank the training set

    with (folder / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == 4
    for row in summary:
        assert int(row["parameters"]) > 0 and int(row["flops_per_image"]) > 0 and float(row["images_per_second"]) > 0
        assert float(row["accuracy_std"]) == 0.0  # one seed

    document = json.loads((folder / "results.json").read_text())
    assert document["command"].startswith("modal-tf compare --models vit_micro,resnet10t")
    assert document["config"]["models"] == ["vit_micro", "resnet10t"]
    assert len(document["runs"]) == 4 and all(run["curve"] for run in document["runs"])
    assert {model["model"] for model in document["models"]} == {"vit_micro", "resnet10t"}

    report = (folder / "report.md").read_text()
    assert document["command"] in report and "| vit_micro | vit |" in report
    for name in ("accuracy_vs_parameters", "accuracy_vs_training_time", "learning_curves", "data_size_sweep"):
        width, height = png_size(folder / f"{name}.png")
        assert width > 100 and height > 100
        assert f"({name}.png)" in report


def test_help_and_catalogue_listing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--models", "--seeds", "--fractions", "--epochs", "--max-time", "--quick"):
        assert flag in text
    assert main(["--list-models"]) == 0
    assert "resnet18_smallstem" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "vit_tiny,no_such_model"], "unknown model 'no_such_model'"),
        (["--models", "timm:no_such_net"], "not a timm architecture"),
        (["--fractions", "0.5,1.5"], r"fractions must lie in \(0, 1\]"),
        (["--seeds", "0,zero"], "comma-separated list of ints"),
        (["--epochs", "0"], "budget.epochs must be a positive int"),
        (["--max-time", "-3"], "budget.max_time must be a positive number"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_the_printed_command_reproduces_the_config() -> None:
    parser = build_parser()
    for argv in (["--quick"], ["--models", "vit_tiny,timm:resnet26", "--max-time", "7.5", "--fractions", "0.25,1"]):
        config = config_from_args(parser.parse_args(argv))
        again = config_from_args(parser.parse_args(shlex.split(resolved_command(config))[2:]))
        assert again == config


def test_config_rejects_repeats_and_bad_names() -> None:
    with pytest.raises(ValueError, match="models must not repeat"):
        CompareConfig(models=("vit_tiny", "vit_tiny"))
    with pytest.raises(ValueError, match="name must be a plain folder name"):
        CompareConfig(name="a/b")
    assert CompareConfig(models=("vit_tiny",), seeds=(0, 1, 2), fractions=(0.5, 1.0)).run_count == 6


def test_flops_count_attention_on_cpu_exactly() -> None:
    prepared = prepare_data(TINY_DATA)
    data = PreparedImages(prepared, 1.0, 8, seed=0)
    data.setup("fit")
    module, _ = build_module(resolve_model("vit_micro"), data, prepared, CompareConfig())
    dim, depth, _ = VIT_SIZES["micro"]
    tokens, features = 64 + 1, 3 * 4 * 4  # 8x8 patches of 4x4 RGB pixels, plus the class token
    per_block = 2 * tokens * dim * 3 * dim + 2 * 2 * tokens * tokens * dim + 2 * tokens * dim * dim
    per_block += 2 * 2 * tokens * dim * 4 * dim  # MLP up and down
    expected = 2 * 64 * features * dim + depth * per_block + 2 * dim * 3
    batch = data.sample_batch(4)
    assert flops_per_image(module.net, batch["inputs"]) == expected  # type: ignore[arg-type]
    assert count_parameters(module.net) == sum(p.numel() for p in module.net.parameters())  # type: ignore[union-attr]
    assert images_per_second(module.net, batch["inputs"], warmup=0, repeats=1) > 0  # type: ignore[arg-type]


def _feature_map(model: torch.nn.Module) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model.forward_features(torch.rand(1, 3, 32, 32)).shape)  # type: ignore[operator]


def test_stems_for_small_images_keep_resolution() -> None:
    import timm

    def resnet18() -> torch.nn.Module:
        return timm.create_model("resnet18", pretrained=False, num_classes=3)

    plain, small, cifar = resnet18(), resnet18(), resnet18()
    assert _feature_map(plain) == (1, 512, 1, 1)  # ImageNet stem: 32 px -> 1x1 before pooling
    assert "max-pool kept" in small_stem(small) and _feature_map(small) == (1, 512, 2, 2)
    assert "max-pool removed" in cifar_stem(cifar) and _feature_map(cifar) == (1, 512, 4, 4)
    deep = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    assert "deep stem" in cifar_stem(deep) and _feature_map(deep)[-2:] == (4, 4)
    mobile = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=3)
    before = _feature_map(mobile)[-1]
    small_stem(mobile)
    assert _feature_map(mobile)[-1] == 2 * before
    with pytest.raises(TypeError, match="ResNets"):
        small_stem(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="ResNets"):
        cifar_stem(mobile)


@pytest.mark.parametrize("name", [name for name in CATALOGUE if not name.endswith(("_base", "cifarstem"))])
def test_every_catalogue_model_classifies_the_shared_patches(name: str) -> None:
    prepared = prepare_data(TINY_DATA)
    data = PreparedImages(prepared, 1.0, 8, seed=0)
    data.setup("fit")
    module, _ = build_module(resolve_model(name), data, prepared, CompareConfig())
    module.net.eval()  # type: ignore[union-attr]
    with torch.no_grad():
        logits = module.net(data.sample_batch(2)["inputs"])  # type: ignore[misc]
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_seeds_share_the_test_set_but_not_the_training_subset() -> None:
    prepared = prepare_data(TINY_DATA)
    first, second = (PreparedImages(prepared, 0.5, 8, seed=seed) for seed in (0, 1))
    first.setup("fit")
    second.setup("fit")
    assert first.splits is not None and second.splits is not None

    def ids(split: list[dict[str, object]]) -> set[int]:
        return {id(sample["inputs"]["image"]) for sample in split}  # type: ignore[index]

    assert ids(first.splits["test"]) == ids(second.splits["test"]) and len(first.splits["train"]) == 12
    assert ids(first.splits["train"]) != ids(second.splits["train"])
    with pytest.raises(ValueError, match="patch_size 5 must divide"):
        prepare_data(DataSettings(num_train=4, num_eval=4, patch_size=5))


def test_time_budget_trains_within_its_deadline() -> None:
    config = CompareConfig(models=("vit_micro",), data=TINY_DATA, budget=Budget(max_time=1.0, warmup_steps=1))
    totals: list[int] = []
    with quiet_lightning():
        trained = train_run(resolve_model("vit_micro"), 1.0, 0, prepare_data(TINY_DATA), config, totals.append)
    assert totals == [trained.result.planned_steps] and 1 <= trained.result.steps <= trained.result.planned_steps
    assert 0.5 < trained.result.train_seconds < 3.0  # stops at the budget (plus at most one step), validation excluded


def run(model: str, family: str, fraction: float, seed: int, accuracy: float) -> RunResult:
    """A synthetic run result."""
    curve = ((1.0, accuracy - 0.1), (2.0, accuracy))  # still gaining 10 points at the end
    return RunResult(model, family, fraction, seed, int(fraction * 100), 10, 10, 1.0 + seed, accuracy, accuracy, curve)


def test_summary_mean_std_and_the_locality_verdict() -> None:
    runs = [
        run("cnn", "cnn", 0.1, 0, 0.80),
        run("cnn", "cnn", 0.1, 1, 0.84),
        run("vit", "vit", 0.1, 0, 0.60),
        run("vit", "vit", 0.1, 1, 0.62),
        run("cnn", "cnn", 1.0, 0, 0.95),
        run("cnn", "cnn", 1.0, 1, 0.95),
        run("vit", "vit", 1.0, 0, 0.93),
        run("vit", "vit", 1.0, 1, 0.93),
    ]
    rows = summarize(runs)
    assert [(row.model, row.fraction, row.seeds) for row in rows][:2] == [("cnn", 0.1, 2), ("vit", 0.1, 2)]
    assert rows[0].accuracy_mean == pytest.approx(0.82) and rows[0].accuracy_std == pytest.approx(0.02 * 2**0.5)
    assert rows[0].train_seconds_mean == pytest.approx(1.5)
    points = sweep_points(rows)
    assert [point.gap for point in points] == pytest.approx([0.21, 0.02])
    assert locality_verdict(points).startswith("Supported here: the CNNs lead on scarce data and the gap narrows")
    assert last_epoch_gains(runs) == pytest.approx({"cnn": 0.1, "vit": 0.1})
    assert "still improving at the end of the budget" in budget_caveat(runs) and "vit (+10.0)" in budget_caveat(runs)
    settled = [replace(r, curve=((1.0, r.test_accuracy), (2.0, r.test_accuracy))) for r in runs]
    assert budget_caveat(settled) == ""

    flipped = [run(r.model, r.family, r.fraction, r.seed, 1 - r.test_accuracy) for r in runs]
    assert locality_verdict(sweep_points(summarize(flipped))).startswith("Refuted here")
    noisy = [*runs[:2], run("vit", "vit", 0.1, 0, 0.50), run("vit", "vit", 0.1, 1, 1.0), *runs[4:]]
    assert "within seed noise" in locality_verdict(sweep_points(summarize(noisy)))
    assert locality_verdict(sweep_points(summarize(runs[:4]))).startswith("Not tested")
    one_seed = [r for r in runs if r.seed == 0]
    assert locality_verdict(sweep_points(summarize(one_seed))).startswith("One seed only, so no noise estimate")
