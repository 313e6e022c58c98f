"""``modal-tf compare``: argument parsing, progress bars, and writing the results.

Parsing stays import-light (no torch, Lightning or matplotlib) so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from modal_tf.compare.config import DEFAULT_MODELS, Budget, CompareConfig, DataSettings, quick

DESCRIPTION = """\
Train our ViT and timm CNN baselines on the same patch tokens, data, split, optimizer (AdamW,
warm-up + cosine) and budget, over several seeds and training-set fractions, and report test
accuracy (mean ± std), parameters, FLOPs per image, training time and inference throughput as a
table (CSV, JSON, Markdown) and PNG plots, plus what the training-set-size sweep says about the
claim that CNNs' locality wins on scarce data. Runs offline on the embedded `shapes` scenes by
default: 12-17 minutes on 2 busy, shared CPU cores with --threads 1.
"""
EPILOG = """\
examples:
  modal-tf compare --threads 1                       # the default comparison on shapes (docs/compare/)
  modal-tf compare --models vit_tiny,vit_small,timm_vit_tiny,resnet18_smallstem,resnet10t,\
mobilenetv3_small_100_smallstem --seeds 0,1,2 --epochs 12 --batch-size 64   # the full set: a GPU or hours of CPU
  modal-tf compare --models vit_tiny,resnet10t --seeds 0,1,2 --fractions 0.1,1.0 --epochs 5
  modal-tf compare --max-time 60                     # equal wall-clock (60 s of training) per run
  modal-tf compare --data digits --name digits
  modal-tf compare --list-models
  modal-tf compare --quick                           # seconds-long smoke test of the whole pipeline
"""
T = TypeVar("T")


def _listed(kind: Callable[[str], T], what: str) -> Callable[[str], tuple[T, ...]]:
    def parse(text: str) -> tuple[T, ...]:
        try:
            return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``modal-tf compare`` argument parser; defaults come from ``CompareConfig``."""
    default, data, budget = CompareConfig(), DataSettings(), Budget()
    parser = argparse.ArgumentParser(
        prog="modal-tf compare",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to compare")
    what.add_argument(
        "--models",
        type=_listed(str, "model names"),
        default=DEFAULT_MODELS,
        help=f"comma-separated catalogue names or timm:<architecture> (default: {','.join(DEFAULT_MODELS)})",
    )
    what.add_argument("--list-models", action="store_true", help="print the model catalogue and exit")
    what.add_argument(
        "--data",
        default=data.source,
        help="shapes | digits | cifar10 | mnist | an ImageFolder path (default: %(default)s)",
    )
    what.add_argument(
        "--num-train",
        type=int,
        default=data.num_train,
        help="generated training scenes, shapes only (default: %(default)s)",
    )
    what.add_argument(
        "--num-eval",
        type=int,
        default=data.num_eval,
        help="generated validation and test scenes each, shapes only (default: %(default)s)",
    )
    what.add_argument(
        "--patch-size",
        type=int,
        default=data.patch_size,
        help="patch side of the shared tokenizer; 0 = 4, or 2 for images <= 16 px (default: %(default)s)",
    )
    what.add_argument(
        "--data-seed",
        type=int,
        default=data.data_seed,
        help="seed of the generated scenes, the same for every run (default: %(default)s)",
    )
    what.add_argument(
        "--seeds", type=_listed(int, "ints"), default=default.seeds, help="comma-separated run seeds (default: 0,1)"
    )
    what.add_argument(
        "--fractions",
        type=_listed(float, "numbers"),
        default=default.fractions,
        help="comma-separated training-set fractions in (0, 1] (default: 0.1,0.3,1.0)",
    )
    how = parser.add_argument_group("budget (identical for every model)")
    how.add_argument(
        "--epochs",
        type=int,
        default=budget.epochs,
        help="passes over the full training set; every fraction gets the same step count (default: %(default)s)",
    )
    how.add_argument("--steps", type=int, default=budget.steps, help="optimizer steps per run, overrides --epochs")
    how.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="seconds of training per run (equal wall-clock), overrides --epochs/--steps",
    )
    how.add_argument("--batch-size", type=int, default=data.batch_size, help="(default: %(default)s)")
    how.add_argument("--lr", type=float, default=budget.lr, help="peak AdamW learning rate (default: %(default)s)")
    how.add_argument("--weight-decay", type=float, default=budget.weight_decay, help="(default: %(default)s)")
    how.add_argument("--warmup-steps", type=int, default=budget.warmup_steps, help="(default: %(default)s)")
    where = parser.add_argument_group("where and how to run")
    where.add_argument("--name", default=default.name, help="results go to <output>/<name>/ (default: %(default)s)")
    where.add_argument("--output", default=default.output, help="(default: %(default)s)")
    where.add_argument(
        "--threads",
        type=int,
        default=default.threads,
        help="torch CPU threads; 0 = torch's default. On a busy shared CPU 1 is often fastest",
    )
    where.add_argument("--accelerator", default=default.accelerator, help="Lightning accelerator (default: auto)")
    where.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 tiny models, 1 seed, 2 fractions, 3 steps, 48 scenes (numbers meaningless)",
    )
    return parser


def config_from_args(options: argparse.Namespace) -> CompareConfig:
    """A validated ``CompareConfig`` from parsed arguments (``--quick`` shrinks it)."""
    config = CompareConfig(
        name=options.name,
        models=options.models,
        seeds=options.seeds,
        fractions=options.fractions,
        data=DataSettings(
            options.data, options.num_train, options.num_eval, options.patch_size, options.batch_size, options.data_seed
        ),
        budget=Budget(
            options.epochs, options.steps, options.max_time, options.lr, options.weight_decay, options.warmup_steps
        ),
        output=options.output,
        threads=options.threads,
        accelerator=options.accelerator,
    )
    return replace(quick(config), name=config.name) if options.quick else config


def print_catalogue() -> None:
    """The model catalogue as a rich table."""
    from rich.console import Console
    from rich.table import Table

    from modal_tf.compare.catalogue import CATALOGUE

    table = Table(title="modal-tf compare models (also: timm:<architecture>, any timm model with its ImageNet stem)")
    for column in ("name", "family", "description"):
        table.add_column(column)
    for spec in CATALOGUE.values():
        table.add_row(spec.name, spec.family, spec.description)
    Console().print(table)


def main(argv: Sequence[str]) -> int:
    """Entry point of ``modal-tf compare``: run the comparison and write everything under ``<output>/<name>/``."""
    parser = build_parser()
    options = parser.parse_args(list(argv))
    if options.list_models:
        print_catalogue()
        return 0
    try:
        config = config_from_args(options)
        from modal_tf.compare.catalogue import resolve_model

        for name in config.models:
            resolve_model(name)
    except (TypeError, ValueError) as error:
        parser.error(str(error))  # exits with status 2 and the usage line, not a traceback
    return run_and_report(config, resolved_command(config), options.quick)


def resolved_command(config: CompareConfig) -> str:
    """A command line naming every setting of ``config``, so it reproduces the run even if defaults change."""
    data, budget = config.data, config.budget
    flags = {
        "--models": ",".join(config.models),
        "--data": data.source,
        "--num-train": data.num_train,
        "--num-eval": data.num_eval,
        "--patch-size": data.patch_size,
        "--data-seed": data.data_seed,
        "--seeds": ",".join(str(seed) for seed in config.seeds),
        "--fractions": ",".join(f"{fraction:g}" for fraction in config.fractions),
        "--epochs": budget.epochs,
        "--steps": budget.steps,
        "--max-time": budget.max_time,
        "--batch-size": data.batch_size,
        "--lr": budget.lr,
        "--weight-decay": budget.weight_decay,
        "--warmup-steps": budget.warmup_steps,
        "--name": config.name,
        "--output": config.output,
        "--threads": config.threads,
        "--accelerator": config.accelerator,
    }
    words = ["modal-tf", "compare"]
    for flag, value in flags.items():
        if value is not None:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(words)


def run_and_report(config: CompareConfig, command: str, smoke_test: bool = False) -> int:
    """Run ``config`` with progress bars, print the table, write results and plots; 0 on success."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from modal_tf.compare.harness import run_comparison
    from modal_tf.compare.plots import write_plots
    from modal_tf.compare.report import print_table, write_results

    # Piped output (logs, CI) would wrap the wide table at rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(f"[bold]{command}[/bold]", soft_wrap=True)  # one line, so it copies and pastes
    console.print(
        f"{config.run_count} runs: {len(config.models)} models x {len(config.fractions)} fractions x "
        f"{len(config.seeds)} seeds"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("all runs", total=config.run_count)
        current = progress.add_task("starting", total=None)

        started = 0

        def on_run(label: str, steps: int) -> None:
            nonlocal started
            progress.update(overall, completed=started)  # every earlier run has finished
            started += 1
            progress.reset(current, total=steps, description=label)
            if not console.is_terminal:  # live bars do not render into a log file: leave one line per run
                console.log(f"run {started}/{config.run_count}: {label}, {steps} steps")

        comparison = run_comparison(config, command, on_run, lambda: progress.advance(current))
        progress.update(overall, completed=config.run_count)
    folder = Path(config.output) / config.name
    plots = write_plots(comparison, folder)
    files = write_results(comparison, folder, plots)
    print_table(comparison, console)
    if smoke_test:
        console.print("[yellow]--quick is a smoke test of the pipeline: its numbers mean nothing[/yellow]")
    console.print(f"results: {', '.join(str(path) for path in [*files, *plots])}")
    return 0
