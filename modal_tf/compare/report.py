"""Write a comparison out: runs and summary as CSV, everything as JSON, a Markdown report, a rich table."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modal_tf.compare.harness import Comparison, ModelCost
from modal_tf.compare.summary import SummaryRow, comparison_summary

RUN_COLUMNS = (
    "model",
    "family",
    "fraction",
    "train_images",
    "seed",
    "planned_steps",
    "steps",
    "train_seconds",
    "val_accuracy",
    "test_accuracy",
)
SUMMARY_COLUMNS = (
    "model",
    "family",
    "fraction",
    "train_images",
    "seeds",
    "accuracy_mean",
    "accuracy_std",
    "train_seconds_mean",
    "train_seconds_std",
    "parameters",
    "flops_per_image",
    "images_per_second",
)


def _millions(count: float) -> str:
    return f"{count / 1e6:.2f} M"


def summary_records(rows: list[SummaryRow], costs: dict[str, ModelCost]) -> list[dict[str, Any]]:
    """Summary rows joined with each model's cost, as plain dicts in ``SUMMARY_COLUMNS`` order."""
    records = []
    for row in rows:
        cost = costs[row.model]
        record = {**asdict(row), "parameters": cost.parameters, "flops_per_image": cost.flops}
        record["images_per_second"] = round(cost.images_per_second, 1)
        records.append({column: record[column] for column in SUMMARY_COLUMNS})
    return records


def _write_csv(path: Path, columns: tuple[str, ...], records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


def main_table_rows(comparison: Comparison, rows: list[SummaryRow]) -> list[list[str]]:
    """One row per model at the largest fraction: cost columns, then accuracy at every fraction."""
    fractions = sorted({row.fraction for row in rows})
    largest = fractions[-1]
    lines = []
    for model, cost in comparison.costs.items():
        mine = {row.fraction: row for row in rows if row.model == model}
        top = mine[largest]
        line = [
            model,
            cost.family,
            _millions(cost.parameters),
            f"{cost.flops / 1e6:.1f} M",
            f"{top.train_seconds_mean:.1f} ± {top.train_seconds_std:.1f}",
            f"{cost.images_per_second:.0f}",
        ]
        line += [f"{mine[fraction].accuracy_mean:.3f} ± {mine[fraction].accuracy_std:.3f}" for fraction in fractions]
        lines.append(line)
    return lines


def table_header(rows: list[SummaryRow]) -> list[str]:
    """Column names of ``main_table_rows``."""
    by_fraction = {row.fraction: row.train_images for row in rows}
    accuracy = [f"acc @ {by_fraction[fraction]} img ({fraction:.0%})" for fraction in sorted(by_fraction)]
    largest = max(by_fraction)
    return ["model", "family", "params", "FLOPs/img", f"train s @ {largest:.0%}", "infer img/s", *accuracy]


def print_table(comparison: Comparison, console: Console) -> None:
    """The main table and the locality verdict on the console."""
    rows, verdict = comparison_summary(comparison)
    table = Table(title=f"modal-tf compare: {comparison.config.name} (test accuracy, mean ± std over seeds)")
    for column in table_header(rows):
        table.add_column(column, justify="left" if column in ("model", "family") else "right")
    for line in main_table_rows(comparison, rows):
        table.add_row(*line)
    console.print(table)
    console.print(verdict)


def markdown(comparison: Comparison, plots: list[Path]) -> str:
    """The report: command, setup, table, data-size verdict, plots."""
    rows, verdict = comparison_summary(comparison)
    config, data, env = comparison.config, comparison.data, comparison.environment
    header = table_header(rows)
    lines = [
        f"# modal-tf compare: {config.name}",
        "",
        "Reproduce with:",
        "",
        "```",
        comparison.command,
        "```",
        "",
        f"Data: `{data['source']}`, {data['image_size'][0]}x{data['image_size'][1]} pixels, {data['channels']} "
        f"channel(s), {len(data['classes'])} classes, splits {data['split_sizes']}; every model reads the same "
        f"{data['patch_size']}x{data['patch_size']} patch tokens (timm models get them reassembled into the "
        "image), normalized by the training subset's statistics; no augmentation.",
        f"Budget: {_budget_text(comparison)}; AdamW (lr {config.budget.lr}, weight decay "
        f"{config.budget.weight_decay}), {config.budget.warmup_steps} warm-up steps then cosine; batch "
        f"{config.data.batch_size}; seeds {list(config.seeds)}; test accuracy of the last weights.",
        f"Machine: {env['processor']} ({env['cpu_count']} cores), torch {env['torch']}, "
        f"{env['torch_threads']} thread(s), accelerator {config.accelerator}; whole comparison "
        f"{comparison.seconds / 60:.1f} min.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if index < 2 else "---:" for index in range(len(header))) + "|",
        *("| " + " | ".join(line) + " |" for line in main_table_rows(comparison, rows)),
        "",
        "FLOPs: forward, per image, 2 per multiply-add (matmuls, convolutions, attention). Inference: batch 64, "
        "eval mode, no grad, median of 5 after 2 warm-up batches. Training seconds exclude validation.",
        "",
        "## Models",
        "",
        *(f"- `{cost.model}`: {cost.description}" for cost in comparison.costs.values()),
        "",
        "## Training-set size: does CNN locality win on scarce data?",
        "",
        verdict,
        "",
        "## Plots",
        "",
        *(f"![{path.stem}]({path.name})" for path in plots),
        "",
    ]
    return "\n".join(lines)


def _budget_text(comparison: Comparison) -> str:
    budget = comparison.config.budget
    if budget.max_time is not None:
        return (
            f"{budget.max_time:g} s of training per run, validation excluded (equal wall-clock; the cosine "
            "schedule's length estimated from a timed probe of 5 steps)"
        )
    if budget.steps:
        return f"{budget.steps} optimizer steps per run"
    return (
        f"{budget.epochs} epochs of the full training set, the same number of steps for every fraction "
        "(smaller subsets are seen more often)"
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN: write ``None`` instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_results(comparison: Comparison, folder: Path, plots: list[Path]) -> list[Path]:
    """``runs.csv``, ``summary.csv``, ``results.json`` and ``report.md`` in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, verdict = comparison_summary(comparison)
    runs = [{column: _finite(getattr(run, column)) for column in RUN_COLUMNS} for run in comparison.runs]
    summary = summary_records(rows, comparison.costs)
    paths = [folder / name for name in ("runs.csv", "summary.csv", "results.json", "report.md")]
    _write_csv(paths[0], RUN_COLUMNS, runs)
    _write_csv(paths[1], SUMMARY_COLUMNS, summary)
    document = {
        "command": comparison.command,
        "config": asdict(comparison.config),
        "data": comparison.data,
        "environment": comparison.environment,
        "seconds": comparison.seconds,
        "models": [asdict(cost) for cost in comparison.costs.values()],
        "runs": [
            {**record, "curve": [list(point) for point in run.curve]}
            for record, run in zip(runs, comparison.runs, strict=True)
        ],
        "summary": summary,
        "locality_verdict": verdict,
    }
    paths[2].write_text(json.dumps(document, indent=1, allow_nan=False), encoding="utf-8")
    paths[3].write_text(markdown(comparison, plots), encoding="utf-8")
    return paths
