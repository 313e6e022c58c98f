"""Worker batches received on a thread (``modal_tf.datamodules.prefetch``) against the training loop's own thread.

Each pair of runs trains one recipe through ``modal-tf fit`` for ``--steps`` steps with
``modal_tf.lit.DataWaitMonitor``, once with ``MODAL_TF_PREFETCH=1`` (thread) and once with ``=0`` (the workers'
batches received on the training loop's thread, as DataLoader does), whatever the recipe's DataModule picks, in A B
B A order (fresh processes, same seed). ``DataWaitMonitor``'s figures cover every step but the first two of each
epoch (290 of 300 steps on the audio keys recipe's 63-batch epochs; the skipped ones include each epoch's restart
of the thread); per run: its last, end-of-run row (as ``data.py`` reads it), giving the step time, the data-wait
share and their sum per batch (step + wait: what a batch costs the loop). Ratios are paired per round; > 1 means
the prefetch thread is faster. The audio DataModules turn the thread on, the others leave it off, after this
comparison.

    OMP_NUM_THREADS=1 python benchmarks/prefetch.py [--recipes audio/encoder_classify_keys] [--steps 300] [--write]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, command_line, finish, heading, interleave, median, round_ratios

from modal_tf.datamodules.prefetch import OVERRIDE
from recipes import short_fit

SIDES = {"thread": "1", "loop": "0"}  # the value of MODAL_TF_PREFETCH per side


def fit(recipe: str, steps: int, scratch: str, prefetch: str) -> dict[str, float]:
    """One ``modal-tf fit`` of ``steps`` steps without validation: step ms, wait share and step + wait ms (means over
    the run's steps but the first two of each epoch: ``DataWaitMonitor``'s last row)."""
    folder = tempfile.mkdtemp(dir=scratch)
    command = short_fit(
        f"recipes/{recipe}.yaml", steps, folder, "--trainer.max_epochs=-1",
        "--trainer.callbacks+=modal_tf.lit.DataWaitMonitor", "--trainer.log_every_n_steps=10",  # train/loss rows
    )  # fmt: skip
    env = {**os.environ, OVERRIDE: prefetch, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    with (Path(folder) / "run" / "metrics.csv").open() as stream:
        rows = [row for row in csv.DictReader(stream) if row.get("perf/step_seconds")]
    if not rows:
        raise SystemExit(f"{recipe}: no DataWaitMonitor figures in {steps} steps; raise --steps")
    step, share = float(rows[-1]["perf/step_seconds"]), float(rows[-1]["perf/data_wait_share"])
    return {"step": 1e3 * step, "share": share, "total": 1e3 * step / (1 - share)}


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=["audio/encoder_classify_keys", "robot/decoder_bc"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=4, help="runs per side, in A B B A order")
    p.add_argument("--write", action="store_true", help="replace the 'prefetch' section of BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    lines = heading(
        "Worker batches received on a prefetch thread",
        command_line("prefetch.py", argv),
        f"{args.steps} training steps per run through the CLI (recipe DataLoader settings, no validation), "
        f"{args.rounds} runs per side in A B B A order; per run, DataWaitMonitor's end-of-run figures (its last "
        "row: every step but the first two of each epoch)",
        allocator=False,
    )
    lines += [
        "",
        "| recipe | side | step ms | data wait share | step + wait ms | thread speed-up (paired) | per round |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in args.recipes:
            runs = interleave(
                {side: partial(fit, recipe, args.steps, scratch, value) for side, value in SIDES.items()},
                args.rounds,
                warmup=0,
                alternate=True,
            )
            ratios = round_ratios([r["total"] for r in runs["loop"]], [r["total"] for r in runs["thread"]])
            for side, measured in runs.items():
                cells = [median([r[key] for r in measured]) for key in ("step", "share", "total")]
                speed = f"{median(ratios):.3f}x | {min(ratios):.2f} - {max(ratios):.2f}" if side == "thread" else " | "
                lines.append(f"| {recipe} | {side} | {cells[0]:.1f} | {cells[1]:.1%} | {cells[2]:.1f} | {speed} |")
                print(lines[-1], flush=True)
    return finish("prefetch", lines, args.write)


if __name__ == "__main__":
    sys.exit(main())
