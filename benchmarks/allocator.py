"""A CLI training run with freed memory kept (the default) against the system malloc's defaults, in turn.

``modal_tf.allocator.keep_freed_memory`` is process-wide, so the two sides cannot share a process: each round runs
``modal-tf fit`` once with the ``KeepFreedMemory`` callback active and once with ``MODAL_TF_SYSTEM_MALLOC=1``,
in A B B A order (so neither side always runs first, on a cold page cache), on the same recipe, seed and step
count. Per run it records (``os.wait4``) wall time, CPU seconds in user and kernel mode and minor page faults of the
run and any DataLoader workers it reaped, and the peak RSS of its largest process (the trainer). Training is
deterministic, so both sides must end at the same loss; the script checks that.

    python benchmarks/allocator.py [--recipe text/decoder_lm] [--steps 200] [--rounds 2] [--write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, command_line, dtypes_to_measure, finish, heading, interleave, median, paired_ratio

from modal_tf.lit.allocator import OPT_OUT
from recipes import last_metrics, short_fit

SIDES = {"kept": "0", "system": "1"}  # the value of MODAL_TF_SYSTEM_MALLOC per side
COLUMNS = ("wall", "user", "sys", "faults", "rss")


def fit(recipe: str, steps: int, precision: str, scratch: str, system: str) -> dict[str, float]:
    """One ``modal-tf fit`` of ``steps`` steps without validation, in a new folder under ``scratch``: its resource
    use and its last training loss."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    command = short_fit(
        f"recipes/{recipe}.yaml", steps, folder, "--trainer.max_epochs=-1", f"--trainer.precision={precision}",
        f"--trainer.log_every_n_steps={min(steps, 20)}",
    )  # fmt: skip
    env = {**os.environ, OPT_OUT: system, "HF_HUB_OFFLINE": "1"}
    log = folder / "stderr.log"
    started = time.perf_counter()
    with log.open("wb") as stderr:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, its reaped workers included
        except BaseException:  # Ctrl-C: do not leave a training run behind
            child.kill()
            child.wait()
            raise
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it; Popen must not wait for it again
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"failed ({child.returncode}): {' '.join(command)}\n{tail}")
    result = {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "faults": usage.ru_minflt,
        "rss": usage.ru_maxrss / 1024,  # Linux reports KiB
        "loss": last_metrics(next(folder.rglob("metrics.csv")))["train/loss"],
    }
    print(f"{OPT_OUT}={system}", {key: round(value, 3) for key, value in result.items()}, flush=True)
    return result


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="text/decoder_lm", help="recipes/<RECIPE>.yaml")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--precision", help="default: bf16-mixed where bf16 runs on fast kernels, else 32-true")
    p.add_argument("--write", action="store_true", help="replace the 'allocator' section of BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    notes: list[str] = []
    if args.precision is None:
        dtypes, notes = dtypes_to_measure("both", flag="--precision bf16-mixed")
        args.precision = "bf16-mixed" if "bf16" in dtypes else "32-true"
    with tempfile.TemporaryDirectory() as scratch:
        sides = {
            side: partial(fit, args.recipe, args.steps, args.precision, scratch, system)
            for side, system in SIDES.items()
        }
        runs = interleave(sides, args.rounds, warmup=0, alternate=True)  # fresh processes: nothing to warm up
    losses = {run["loss"] for side in runs.values() for run in side}
    lines = heading(
        "CPU allocator: freed memory kept vs system malloc",
        command_line("allocator.py", argv),
        f"`modal-tf fit` of recipes/{args.recipe}.yaml, {args.steps} steps, {args.precision}, no validation, "
        f"{args.rounds} rounds per side in A B B A order (each a fresh process; figures include start-up and any "
        "DataLoader workers, peak RSS is the trainer's); kept = the CLI default (`KeepFreedMemory`), system = "
        "`MODAL_TF_SYSTEM_MALLOC=1`",
        allocator=False,
    )
    lines += ["", "| side | wall s | user s | sys s | minor faults | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|"]
    for side, results in runs.items():
        row = [median([run[column] for run in results]) for column in COLUMNS]
        lines.append(f"| {side} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:,.0f} | {row[4]:,.0f} |")
    speed = paired_ratio([1 / run["wall"] for run in runs["kept"]], [1 / run["wall"] for run in runs["system"]])
    per_round = ", ".join(f"{s['wall'] / k['wall']:.3f}" for k, s in zip(runs["kept"], runs["system"], strict=True))
    lines += [
        "",
        f"- kept / system wall-clock speed (paired): {speed:.3f}x (per round {per_round})",
        f"- final training loss identical on both sides: {'yes' if len(losses) == 1 else f'NO: {sorted(losses)}'}",
    ]
    return finish("allocator", lines, args.write, notes=notes)


if __name__ == "__main__":
    sys.exit(main())
