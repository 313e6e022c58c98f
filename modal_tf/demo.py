"""``modal-tf demo``: train the bundled recipe(s) briefly and print what happened.

For now the tour has one stop, the design notes' first claim: attention is
order-blind. The order task is trained twice, with sinusoidal positions and
with none, and the summary shows the gap.
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

from modal_tf.cli import build_cli, recipes_root


@dataclass(frozen=True)
class Stop:
    """One training run of the tour."""

    title: str
    recipe: str
    overrides: tuple[str, ...]
    metric: str


TOUR = (
    Stop(
        "order task, sinusoidal positions",
        "text/who_did_it.yaml",
        ("--model.transformer.position=sinusoidal",),
        "test/acc",
    ),
    Stop("order task, no positions", "text/who_did_it.yaml", ("--model.transformer.position=none",), "test/acc"),
)


def run_stop(stop: Stop, output: Path, extra: Sequence[str]) -> dict[str, Any]:
    """Fit then test one recipe; return its summary row."""
    name = stop.title.replace(",", "").replace(" ", "_")
    shutil.rmtree(output / name, ignore_errors=True)  # the tour's runs are disposable: rerunning starts fresh
    args = [
        "--config",
        str(recipes_root() / stop.recipe),
        *stop.overrides,
        *extra,
        f"--trainer.logger.init_args.save_dir={output}",
        f"--trainer.logger.init_args.name={name}",
        f"--trainer.default_root_dir={output}",
    ]
    started = time.perf_counter()
    cli: Any = build_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    task = cli.model.task
    return {
        "run": stop.title,
        "recipe": stop.recipe,
        "shape": cli.model.shape,
        "tokenizer": ", ".join(tok.registry_name for tok in task.inputs.values()),
        "metric": stop.metric,
        "value": round(float(metrics[stop.metric]), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: Sequence[str]) -> int:
    """Run the tour; ``--quick`` trains a few steps only (used by the tests)."""
    parser = argparse.ArgumentParser(prog="modal-tf demo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few training steps per run (a smoke test)")
    parser.add_argument("--output", default="runs/demo", help="folder for logs, checkpoints and summary")
    options = parser.parse_args(list(argv))
    output = Path(options.output)
    extra = (
        ["--trainer.max_steps=5", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=2"]
        if options.quick
        else []
    )
    rows = [run_stop(stop, output, extra) for stop in TOUR]

    table = Table(title="modal_tf demo" + (" (--quick: numbers are meaningless)" if options.quick else ""))
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console().print(table)
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps(rows, indent=1))
    print(f"summary written to {output / 'summary.json'}; logs and checkpoints under {output}/")
    return 0
