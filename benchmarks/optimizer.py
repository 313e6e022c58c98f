"""AdamW's step with torch's three kernels, and what the fused one saves of a whole training step.

The training layer (``modal_tf.lit.optim.build_optimizer``) picks the fused kernel wherever it applies. Part 1
times ``optimizer.step()`` alone on the parameters and gradients of ``core.py``'s decoder, for a Python loop over
the parameters (``foreach=False``), one multi-tensor kernel per operation (``foreach=True``, the previous default)
and one fused kernel (``fused=True``); each kernel steps its own copy of the same parameters, interleaved. Part 2
times whole training steps of that decoder (``core.train_steps``) with the foreach and with the fused kernel, in
A B B A rounds, per dtype.

    OMP_NUM_THREADS=1 python benchmarks/optimizer.py [--rounds 15] [--step-rounds 8] [--write]
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ab_row,
    add_run_flags,
    command_line,
    dtypes_to_measure,
    finish,
    heading,
    interleave,
    median,
    round_ratios,
    seconds,
    start,
)
from core import train_steps
from peers import Shape, as_batch, ours_decoder

KERNELS: dict[str, dict[str, bool]] = {
    "for-loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def decoder(shape: Shape) -> nn.Module:
    """core.py's decoder at ``shape``, from the same seed every call."""
    return ours_decoder(shape)[0]


def step_seconds(model: nn.Module, kernel: dict[str, bool], steps: int) -> Callable[[], float]:
    """Seconds per ``optimizer.step()`` on a copy of ``model`` whose gradients are fixed random tensors."""
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    for parameter in copied.parameters():
        parameter.grad = torch.randn(parameter.shape, generator=generator) * 1e-3
    optimizer = torch.optim.AdamW(copied.parameters(), lr=1e-4, **kernel)

    def run() -> float:
        return seconds(lambda: [optimizer.step() for _ in range(steps)]) / steps

    return run


def train_seconds(model: nn.Module, kernel: dict[str, bool], ids: torch.Tensor, bf16: bool) -> Callable[[], float]:
    """Seconds per whole training step (forward, loss, backward, AdamW) of a copy of ``model``."""
    copied = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(copied.parameters(), lr=1e-4, **kernel)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return copied({}, as_batch(batch))  # type: ignore[no-any-return]

    def run() -> float:
        return seconds(lambda: train_steps(copied, forward, optimizer, ids, ids, 2, bf16)) / 2

    return run


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds of part 1")
    p.add_argument("--step-rounds", type=int, default=8, help="A B B A rounds of part 2")
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per part-1 measurement")
    add_run_flags(p, "optimizer")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    shape = Shape()
    model = decoder(shape)
    count = sum(parameter.numel() for parameter in model.parameters())
    step_rounds = args.step_rounds
    lines = heading(
        "AdamW kernels",
        command_line("optimizer.py", argv),
        f"part 1: `optimizer.step()` alone on core.py's decoder ({count:,} parameters in "
        f"{len(list(model.parameters()))} tensors), {args.rounds} interleaved rounds of {args.steps} steps; part 2: "
        f"whole training steps of that decoder (batch 16 x {shape.seq}), {step_rounds} A B B A rounds of 2 steps",
    )
    lines += ["", "| AdamW kernel | ms per step (median) | min - max | speed-up over foreach (paired) |"]
    lines.append("|---|---:|---:|---:|")
    times = interleave({name: step_seconds(model, kernel, args.steps) for name, kernel in KERNELS.items()}, args.rounds)
    for name, measured in times.items():
        ratio = median(round_ratios(times["foreach"], measured))
        lines.append(
            f"| {name} | {median(measured) * 1e3:.2f} | {min(measured) * 1e3:.2f} - {max(measured) * 1e3:.2f} | "
            f"{ratio:.2f}x |"
        )
        print(lines[-1], flush=True)
    ids = torch.randint(0, shape.vocab, (16, shape.seq), generator=torch.Generator().manual_seed(0))
    lines += ["", "| training step | foreach s/step | fused s/step | fused speed-up (paired) | range |"]
    lines.append("|---|---:|---:|---:|---:|")
    dtypes, dtype_notes = dtypes_to_measure("both", flag=None)
    for dtype in dtypes:
        bf16 = dtype == "bf16"
        steps = interleave(
            {name: train_seconds(model, KERNELS[name], ids, bf16) for name in ("foreach", "fused")},
            step_rounds,
            alternate=True,
        )
        lines.append(ab_row(dtype, steps["foreach"], steps["fused"]))
        print(lines[-1], flush=True)
    return finish("optimizer", lines, args.write, notes=dtype_notes)


if __name__ == "__main__":
    raise SystemExit(main())
