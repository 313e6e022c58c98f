"""The data side: tokenizer throughput, and for every bundled recipe the share of step time spent waiting for data.

Notation: B batch; samples/s counts raw samples encoded by one process.

1. ``tokenize``: ``encode`` throughput of the patch, spectrogram (with and without resampling), bytes and action
   tokenizers on inputs of the recipes' shapes (BPE against raw HF ``tokenizers``: ``tokenizer_bpe.py``);
2. ``recipes``: each embedded-data recipe trains ``--steps`` steps through ``modal-tf fit`` with
   ``modal_tf.lit.DataWaitMonitor`` (fetch time over fetch + step time, first two batches skipped), with the
   recipe's own DataLoader settings. Target (issue #8): < 10 % for every recipe.

    OMP_NUM_THREADS=1 python benchmarks/data.py [--part tokenize|recipes|both] [--write]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, command_line, finish, heading, interleave, median, seconds

from modal_tf.tokenizers import tokenizer_from_spec
from recipes import embedded_recipes, last_metrics, short_fit

TARGET = 0.10


def tokenizer_cases() -> dict[str, tuple[Any, Callable[[int], Any]]]:
    """name -> (tokenizer, sample maker) at the shapes the bundled recipes use."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(512, 4, 2)).astype(np.float32)
    bins = tokenizer_from_spec({"name": "action_bins", "num_bins": 32})
    bins.fit(actions)
    sentence = "Tom was hit by Jerry in the garden before lunch."
    return {
        "patch 2px, 16x16 grey (digits)": (
            tokenizer_from_spec({"name": "patch", "patch_size": 2, "channels": 1, "mean": [0.5], "std": [0.25]}),
            lambda i: rng.integers(0, 256, size=(16, 16), dtype=np.uint8),
        ),
        "patch 8px, 32x32 RGB (robot camera)": (
            tokenizer_from_spec(
                {"name": "patch", "patch_size": 8, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
            ),
            lambda i: rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8),
        ),
        "spectrogram, 1 s at 8 kHz (keys)": (
            tokenizer_from_spec(
                {"name": "spectrogram", "sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "stack": 2}
            ),
            lambda i: (torch.randn(8000) * 0.1, 8000),
        ),
        "spectrogram, 1 s at 44.1 kHz -> 8 kHz (resampled)": (
            tokenizer_from_spec(
                {"name": "spectrogram", "sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "stack": 2}
            ),
            lambda i: (torch.randn(44100) * 0.1, 44100),
        ),
        "bytes, 48-character sentence": (tokenizer_from_spec({"name": "bytes"}), lambda i: sentence),
        "action_bins, 4 x 2 chunk": (bins, lambda i: actions[i % len(actions)]),
    }


def tokenize_section(args: argparse.Namespace) -> list[str]:
    """samples/s of every tokenizer case, interleaved rounds."""
    cases = tokenizer_cases()
    samples = {name: [make(i) for i in range(args.samples)] for name, (_, make) in cases.items()}

    def rate(name: str) -> float:
        tokenizer = cases[name][0]
        return args.samples / seconds(lambda: [tokenizer.encode(s) for s in samples[name]])

    rates = interleave({name: (lambda name=name: rate(name)) for name in cases}, args.rounds)
    lines = ["", "| tokenizer (input) | samples/s (median) | min - max |", "|---|---:|---:|"]
    lines += [f"| {name} | {median(r):,.0f} | {min(r):,.0f} - {max(r):,.0f} |" for name, r in rates.items()]
    return lines


def recipe_section(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Data-wait share of each recipe's first ``args.steps`` training steps."""
    lines = ["", "| recipe | ms per step | ms waiting for data | data wait share |", "|---|---:|---:|---:|"]
    worst: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in embedded_recipes():
            name = f"{recipe.parent.name}/{recipe.stem}"
            save_dir = Path(scratch) / recipe.stem
            command = short_fit(recipe, args.steps, save_dir, "--trainer.callbacks+=modal_tf.lit.DataWaitMonitor")
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                failure = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                lines.append(f"| {name} | failed: {failure[:80]} | | |")
                continue
            log = save_dir / "run" / "metrics.csv"
            metrics = last_metrics(log) if log.is_file() else {}
            if "perf/data_wait_share" not in metrics:
                lines.append(f"| {name} | no perf/* metrics logged (fewer than 3 steps?) | | |")
                continue
            share, step = metrics["perf/data_wait_share"], metrics["perf/step_seconds"]
            wait = step * share / (1 - share)
            lines.append(f"| {name} | {step * 1e3:.1f} | {wait * 1e3:.1f} | {share:.1%} |")
            print(lines[-1], flush=True)
            if share >= TARGET:
                worst.append(f"{name} waits {share:.0%} of its step time for data (target < {TARGET:.0%})")
            shutil.rmtree(save_dir, ignore_errors=True)
    return lines, worst or [f"every recipe waits < {TARGET:.0%} of its step time for data"]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("tokenize", "recipes", "both"), default="both")
    for name, default in (("samples", 200), ("rounds", 3), ("steps", 30)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--write", action="store_true", help="replace the 'data' section of BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    lines = heading(
        "Data side: tokenizers and data wait",
        command_line("data.py", argv),
        f"tokenizers: {args.samples} samples x {args.rounds} interleaved rounds, one process; recipes: {args.steps} "
        "training steps each with the recipe's DataLoader settings (first two batches not counted), through the CLI "
        "(which keeps freed memory on CPU)",
        allocator=False,
    )
    verdicts: list[str] = []
    if args.part in ("tokenize", "both"):
        lines += tokenize_section(args)
    if args.part in ("recipes", "both"):
        table, verdicts = recipe_section(args)
        lines += table
    return finish("data", lines, args.write, notes=verdicts)


if __name__ == "__main__":
    sys.exit(main())
