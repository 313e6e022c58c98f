"""``modal-tf demo``: a guided tour — the smallest recipe of every modality, trained briefly.

Stops: the order task with and without positions (text: attention is order-blind),
a ViT on real handwritten digits (vision), telephone keys in noise (audio) and
a VLA policy acting closed-loop in the tabletop simulator (robot actions). The
tour ends with a summary table, written with a bar chart to ``runs/demo/``.
Budgets are cut from the full recipes so the whole tour takes a few minutes on
2 CPU cores; ``--quick`` trains a handful of steps per stop (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modal_tf.atomic import atomic_write_text
from modal_tf.cli import build_cli, recipes_root

QUICK = ("--trainer.max_steps=5", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=2")


@dataclass(frozen=True)
class Stop:
    """One training run of the tour.

    Attributes:
        modality: What the tokenizers read.
        title: What the stop shows.
        recipe: Recipe path under ``recipes/``.
        overrides: CLI overrides shortening the recipe for the tour.
        metric: Logged test metric reported, or ``rollout`` for closed-loop success.
    """

    modality: str
    title: str
    recipe: str
    overrides: tuple[str, ...]
    metric: str


TOUR = (
    Stop("text", "order task, sinusoidal positions", "text/who_did_it.yaml", ("--trainer.max_epochs=4",), "test/acc"),
    Stop(
        "text",
        "order task, no positions",
        "text/who_did_it.yaml",
        ("--trainer.max_epochs=4", "--model.transformer.position=none"),
        "test/acc",
    ),
    Stop("vision", "ViT on 8x8 digits", "vision/encoder_classify_digits.yaml", ("--trainer.max_epochs=8",), "test/acc"),
    Stop(
        "audio",
        "telephone keys in noise",
        "audio/encoder_classify_keys.yaml",
        ("--trainer.max_epochs=2", "--data.init_args.num_train=2000"),
        "test/acc",
    ),
    Stop(
        "robot",
        "VLA chunk policy, closed loop",
        "robot/encoder_chunk.yaml",
        ("--trainer.max_epochs=4", "--data.init_args.num_episodes=200"),
        "rollout",
    ),
)


def run_stop(stop: Stop, output: Path, quick: bool) -> dict[str, Any]:
    """Fit then test one stop (and roll a policy out); return its summary row."""
    name = f"{stop.modality}_{stop.title.split(',')[-1].strip().replace(' ', '_')}"
    shutil.rmtree(output / name, ignore_errors=True)  # the tour's runs are disposable: rerunning starts fresh
    args = [
        "--config",
        str(recipes_root() / stop.recipe),
        *stop.overrides,
        *(QUICK if quick else ()),
        f"--trainer.logger.init_args.save_dir={output}",
        f"--trainer.logger.init_args.name={name}",
    ]
    started = time.perf_counter()
    cli: Any = build_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    task = cli.model.task
    if stop.metric == "rollout":
        value, metric = _rollout(output / name / "checkpoints" / "last.ckpt", output / name, 3 if quick else 50)
    else:
        value, metric = float(metrics[stop.metric]), stop.metric
    tokenizers = [tok.registry_name for tok in task.inputs.values()]
    if task.target is not None:
        tokenizers.append(f"-> {task.target.registry_name}")
    return {
        "modality": stop.modality,
        "run": stop.title,
        "tokenizers": " + ".join(tokenizers),
        "shape": cli.model.shape,
        "metric": metric,
        "value": round(value, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _rollout(checkpoint: Path, output: Path, episodes: int) -> tuple[float, str]:
    from modal_tf.export import pretrained_from_checkpoint
    from modal_tf.robot.policy import ModelPolicy
    from modal_tf.robot.rollout import evaluate, plot_trajectories

    report = evaluate(ModelPolicy(pretrained_from_checkpoint(checkpoint)), episodes, seed=0, execute=1_000)
    plot_trajectories(report, output / "rollout.png")
    return report.success_rate, f"closed-loop success ({episodes} held-out scenes)"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [f"{row['modality']}\n{row['run']}" for row in rows]
    axes.barh(labels, [row["value"] for row in rows], color="#4c72b0")
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.set_xlabel("test accuracy / closed-loop success")
    axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str]) -> int:
    """Run the tour; ``--quick`` trains a few steps per stop (used by the tests)."""
    parser = argparse.ArgumentParser(prog="modal-tf demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few training steps per stop (a smoke test)")
    parser.add_argument("--output", default="runs/demo", help="folder for logs, checkpoints and the summary")
    options = parser.parse_args(list(argv))
    output = Path(options.output)
    rows = [run_stop(stop, output, options.quick) for stop in TOUR]

    table = Table(title="modal_tf demo" + (" (--quick: numbers are meaningless)" if options.quick else ""))
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console().print(table)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "summary.json", json.dumps(rows, indent=1))
    _plot(rows, output / "summary.png")
    print(f"summary written to {output / 'summary.json'} and {output / 'summary.png'}; runs under {output}/")
    return 0
