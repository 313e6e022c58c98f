"""``torch.compile`` against eager for our decoder and the SDPA reference: does compiling pay on this device?

Each model trains ``core.py``'s decoder shape twice, once eager and once through ``torch.compile`` (inductor, its
defaults or ``--mode``; only the default mode is written to BENCHMARKS.md), each copy from the same seed with its own
AdamW, interleaved in A B B A rounds after warm-up calls that absorb compilation and recompilation. Reported per model
and dtype: seconds per step, the compiled speed-up over eager (paired), and the compiled copy's first call:
``--steps`` training steps with the compilation, each model's in a fresh inductor cache (``fresh_cache``), so it is a
cold compile. Compile once and train many steps for the speed-up to matter; a speed-up below 1 means compiling costs
time twice.

    OMP_NUM_THREADS=1 python benchmarks/compile.py [--dtype bf16] [--rounds 5] [--device cuda] [--mode M] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch._inductor.utils import fresh_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ab_row,
    add_dtype_flag,
    add_run_flags,
    command_line,
    dtypes_to_measure,
    finish,
    heading,
    interleave,
    seconds,
    start,
)
from core import adamw, train_steps
from peers import Forward, RefGPT, Shape, ours_decoder

from modal_tf.lit.compile import MODES


def build(name: str, shape: Shape, device: torch.device) -> tuple[nn.Module, Forward]:
    """A fresh ``name`` decoder (``ours`` or ``reference``) from seed 0, with its ids -> logits closure."""
    if name == "ours":
        model, forward = ours_decoder(shape)
        return model.to(device), forward
    torch.manual_seed(0)
    reference = RefGPT(shape, causal=True).to(device)
    return reference, reference


def timer(
    model: nn.Module, forward: Forward, ids: torch.Tensor, steps: int, bf16: bool, device: torch.device
) -> Callable[[], float]:
    """Seconds per training step of ``model`` through ``forward``, with its own optimizer."""
    optimizer = adamw(model)
    return lambda: seconds(lambda: train_steps(model, forward, optimizer, ids, ids, steps, bf16), device) / steps


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dtype_flag(p)
    p.add_argument("--rounds", type=int, default=6, help="A B B A rounds per model and dtype")
    p.add_argument("--steps", type=int, default=2, help="training steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per copy first (compilation, recompiles)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--mode",
        choices=MODES,  # the modes the training layer's CompileModel takes
        default="default",
        help="torch.compile's mode (max-autotune: inductor also tries its own C++/Triton GEMM templates)",
    )
    add_run_flags(p, "compile")
    args = p.parse_args(argv)
    if args.write and args.mode != "default":
        p.error(f"--write records inductor's default mode in BENCHMARKS.md; run --mode {args.mode} without it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    device = torch.device(args.device)
    shape, batch = Shape(), 16
    ids = torch.randint(0, shape.vocab, (batch, shape.seq), generator=torch.Generator().manual_seed(0)).to(device)
    dtypes, dtype_notes = dtypes_to_measure(args.dtype, device)
    lines = heading(
        "torch.compile vs eager",
        command_line("compile.py", argv),
        f"decoder, core.py's shape (vocab {shape.vocab}, dim {shape.dim}, depth {shape.depth}, heads {shape.heads}, "
        f"seq {shape.seq}, batch {batch}); per model and dtype an eager and a compiled copy (inductor, "
        f"mode {args.mode}), "
        f"{args.warmup} untimed calls each (the compiled copy one more, its first: compilation and {args.steps} "
        f"steps, in a fresh inductor cache), then {args.rounds} A B B A rounds of {args.steps} steps",
        device,
    )
    header = "| model, dtype | eager s/step | compiled s/step | compiled speed-up (paired) | range | first call s |"
    lines += ["", header]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for dtype in dtypes:
        bf16 = dtype == "bf16"
        for name in ("ours", "reference"):
            torch._dynamo.reset()
            eager_model, eager_forward = build(name, shape, device)
            compiled_model, forward = build(name, shape, device)
            eager = timer(eager_model, eager_forward, ids, args.steps, bf16, device)
            compiled = timer(compiled_model, torch.compile(forward, mode=args.mode), ids, args.steps, bf16, device)
            with fresh_cache():  # a cold compile: no kernels from earlier runs or rows
                begin = time.perf_counter()
                compiled()  # an extra untimed call, timed by hand: the compilation and --steps steps
                first = time.perf_counter() - begin
            times = interleave({"eager": eager, "compiled": compiled}, args.rounds, args.warmup, alternate=True)
            lines.append(ab_row(f"{name}, {dtype}", times["eager"], times["compiled"]) + f" {first:.1f} |")
            print(lines[-1], flush=True)
    return finish("compile", lines, args.write, device, dtype_notes)


if __name__ == "__main__":
    raise SystemExit(main())
