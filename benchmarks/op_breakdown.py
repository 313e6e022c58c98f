"""Where a training step's time goes, op by op: ours against its peers, fp32 and bf16-mixed, without a profiler.

Notation: B batch, T tokens, M/K/N the rows, inner and output columns of a matrix product.

Every ATen op of one training step of ``benchmarks/core.py`` (forward, loss, backward, ``AdamW.step()``) is
timed by a ``TorchDispatchMode`` that reads the wall clock around the kernel — on CPU kernels run synchronously,
so the difference is the op's time (no profiler: its per-op timings are not what this needs). The mode adds a
few microseconds per op, so the table shows the step untraced and traced, and the traced time spent outside the
ops (Python, autograd, the mode itself). Ops are grouped into categories; matrix products also count their FLOPs
(2 M K N), so the table shows the throughput the GEMMs reach *inside* the step. Each model runs ``--steps``
untraced then ``--steps`` traced steps after one warm-up step, models interleaved; every figure is a mean over
the ``--rounds`` rounds' steps (one statistic throughout, so the ops add up to at most the traced step).

    OMP_NUM_THREADS=1 python benchmarks/op_breakdown.py [--models ours reference] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_run_flags, command_line, dtypes_to_measure, finish, heading, start
from core import adamw, train_steps
from peers import Shape, contenders

# Category of each ATen op (by overload packet name); anything else is "other".
CATEGORIES: dict[str, tuple[str, ...]] = {
    "GEMM": ("mm", "addmm", "addmm_", "bmm", "baddbmm", "baddbmm_", "addbmm", "addbmm_"),
    "fused attention (SDPA)": (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention_for_cpu_backward",
    ),
    "softmax (attention)": ("_softmax", "_safe_softmax", "_softmax_backward_data"),
    "loss": ("_log_softmax", "_log_softmax_backward_data", "nll_loss_forward", "nll_loss_backward"),
    "activation": ("gelu", "gelu_backward", "silu", "silu_backward", "relu", "threshold_backward"),
    "norm": ("native_layer_norm", "native_layer_norm_backward"),
    "copy, cast, stack": ("clone", "copy_", "_to_copy", "stack", "cat"),
    "elementwise": ("add", "add_", "mul", "mul_", "sub", "div", "masked_fill_", "masked_fill", "where", "fill_"),
    "sums (bias gradients)": ("sum",),
    "optimizer": ("_fused_adamw_", "_foreach_add_", "_foreach_mul_", "_foreach_addcmul_", "_foreach_lerp_"),
    "embedding": ("embedding", "embedding_dense_backward"),
}
CATEGORY_OF = {op: category for category, ops in CATEGORIES.items() for op in ops}


def gemm_flops(name: str, args: Sequence[Any]) -> float:
    """FLOPs (2 M K N per product) of a matrix-product call (``CATEGORIES["GEMM"]``); 0 for anything else."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if name in ("mm", "bmm"):
        a, b = tensors[0], tensors[1]
    elif name in ("addmm", "addmm_", "baddbmm", "baddbmm_", "addbmm", "addbmm_"):
        a, b = tensors[1], tensors[2]
    else:
        return 0.0
    batch = a.shape[0] if a.dim() == 3 else 1
    return 2.0 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


class OpTimer(TorchDispatchMode):
    """Sums wall seconds, calls and GEMM FLOPs per ATen op while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.flops = 0.0
        self.gemm_seconds = 0.0

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        began = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        elapsed = time.perf_counter() - began
        name = func.overloadpacket.__name__
        self.seconds[name] += elapsed
        self.calls[name] += 1
        if CATEGORY_OF.get(name) == "GEMM":
            self.flops += gemm_flops(name, args)
            self.gemm_seconds += elapsed
        return out


class Breakdown:
    """One contender at one dtype: untraced step times, and per-op times of traced steps."""

    def __init__(self, run: Callable[[int], None], steps: int) -> None:
        self.run, self.steps = run, steps
        self.plain: list[float] = []
        self.traced: list[float] = []
        self.timer = OpTimer()

    def round(self) -> None:
        """``steps`` untraced steps, then ``steps`` traced ones."""
        began = time.perf_counter()
        self.run(self.steps)
        self.plain.append((time.perf_counter() - began) / self.steps)
        with self.timer:
            began = time.perf_counter()
            self.run(self.steps)
            self.traced.append((time.perf_counter() - began) / self.steps)

    def per_step(self, total: float) -> float:
        """``total`` (summed over every traced step) per traced step."""
        return total / (self.steps * len(self.traced))

    def step_ms(self, traced: bool) -> float:
        """Mean milliseconds per traced (or untraced) step over the rounds."""
        times = self.traced if traced else self.plain
        return sum(times) / len(times) * 1e3

    def categories(self) -> dict[str, float]:
        """Category -> milliseconds per step."""
        totals: defaultdict[str, float] = defaultdict(float)
        for name, spent in self.timer.seconds.items():
            totals[CATEGORY_OF.get(name, "other")] += self.per_step(spent) * 1e3
        return totals


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["ours", "reference"], help="contenders from peers.py")
    p.add_argument(
        "--dtypes", nargs="+", choices=("fp32", "bf16"), help="default: fp32, and bf16 where it runs on fast kernels"
    )
    p.add_argument("--steps", type=int, default=2, help="steps per round, untraced and traced each")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--top", type=int, default=12, help="ops listed for ours")
    add_run_flags(p, "breakdown")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    dtype_notes: list[str] = []
    if args.dtypes is None:
        args.dtypes, dtype_notes = dtypes_to_measure("both", flag="--dtypes fp32 bf16")
    shape, batch = Shape(), 16
    models, _ = contenders(shape, causal=True)
    unknown = sorted(set(args.models) - set(models))
    if unknown:
        raise SystemExit(f"--models: expected names from {sorted(models)}, got unknown {unknown}")
    ids = torch.randint(0, shape.vocab, (batch, shape.seq), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, shape.vocab, (batch, shape.seq), generator=torch.Generator().manual_seed(1))
    runs: dict[tuple[str, str], Breakdown] = {}
    for name in args.models:
        module, forward = models[name]
        opt = adamw(module)
        for dtype in args.dtypes:

            def run(n: int, module: Any = module, forward: Any = forward, opt: Any = opt, dtype: str = dtype) -> None:
                train_steps(module, forward, opt, ids, targets, n, bf16=dtype == "bf16")

            run(1)  # warm-up: allocator, oneDNN primitives, optimizer state
            runs[name, dtype] = Breakdown(run, args.steps)
    for _ in range(args.rounds):
        for breakdown in runs.values():
            breakdown.round()
    lines = heading(
        "Where the step's time goes, op by op",
        command_line("op_breakdown.py", argv),
        f"decoder, core.py's shape (vocab {shape.vocab}, dim {shape.dim}, depth {shape.depth}, heads {shape.heads}, "
        f"seq {shape.seq}, batch {batch}); {args.rounds} rounds of {args.steps} untraced + {args.steps} traced steps "
        "per model, models interleaved; ms per step, means over the rounds (share of the traced step). GEMM GFLOP/s "
        "counts the GEMMs the dispatcher sees: ours includes its attention's batched GEMMs, the reference's "
        "attention GEMMs run inside SDPA's kernel, not counted",
    )
    columns = sorted(runs, key=lambda key: (args.dtypes.index(key[1]), args.models.index(key[0])))
    lines += ["", "| | " + " | ".join(f"{name} {dtype}" for name, dtype in columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    lines.append(
        "| step, untraced / traced | "
        + " | ".join(f"{runs[key].step_ms(False):.0f} / {runs[key].step_ms(True):.0f}" for key in columns)
        + " |"
    )
    per_category = {key: b.categories() for key, b in runs.items()}
    for category in [*CATEGORIES, "other"]:
        cells = []
        for key in columns:
            spent = per_category[key].get(category, 0.0)
            cells.append(f"{spent:.0f} ({spent / runs[key].step_ms(True):.0%})" if spent else "-")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    outside = {key: runs[key].step_ms(True) - sum(per_category[key].values()) for key in columns}
    lines.append(
        "| outside the ops (Python, autograd, the mode) | "
        + " | ".join(f"{outside[key]:.0f} ({outside[key] / runs[key].step_ms(True):.0%})" for key in columns)
        + " |"
    )
    lines.append(
        "| GEMM GFLOP/s inside the step | "
        + " | ".join(
            f"{runs[key].timer.flops / runs[key].timer.gemm_seconds / 1e9:.0f}" if runs[key].timer.gemm_seconds else "-"
            for key in columns
        )
        + " |"
    )
    for dtype in args.dtypes:
        if ("ours", dtype) not in runs:
            continue
        ours = runs["ours", dtype]
        lines += ["", f"ours {dtype}, the {args.top} slowest ops (ms per step, calls per step, category):", ""]
        ranked = sorted(ours.timer.seconds.items(), key=lambda item: -item[1])[: args.top]
        lines += [
            f"- `{name}` {ours.per_step(spent) * 1e3:.1f} ms, {ours.per_step(ours.timer.calls[name]):.0f} calls "
            f"({CATEGORY_OF.get(name, 'other')})"
            for name, spent in ranked
        ]
    return finish("breakdown", lines, args.write, notes=dtype_notes)


if __name__ == "__main__":
    sys.exit(main())
