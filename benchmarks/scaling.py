"""Step time and peak memory of our decoder-only core vs sequence length, where attention's T² takes over.

Notation: T sequence length, N weights a token passes through, L layers, H heads, Q head dim.

Each (length, dtype) runs in a fresh subprocess at batch 1 (so tokens per step = T), so its peak memory is its own:
on CPU the growth of the process's peak resident set size (``ru_maxrss``) over the training steps, on CUDA
``torch.cuda.max_memory_allocated``. Per-token work is ``6N + 12LHQT`` (PaLM), so time per token stays flat while
``6N`` dominates and grows linearly once the attention term does; the table shows both the measured time per token
and the attention share of the FLOPs. The attention kernel changes with length: the explicit-GEMM path
(``modal_tf/core/explicit_attention.py``) up to ``MAX_CAUSAL_KEYS`` keys in bf16 (``MAX_FP32_CAUSAL_KEYS`` in
fp32) and ``MAX_SCORE_BYTES`` of scores per call, SDPA's flash kernel beyond (the ``kernel`` column).

    OMP_NUM_THREADS=1 python benchmarks/scaling.py [--lengths 256 512 1024 2048 4096] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    add_dtype_flag,
    add_run_flags,
    apply_allocator,
    command_line,
    dtypes_to_measure,
    finish,
    heading,
    median,
    seconds,
    start,
)
from core import adamw, flops_per_token
from peers import Shape, as_batch, ours_decoder

from modal_tf.core.explicit_attention import uses_explicit


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    for name, default in (("vocab", 512), ("dim", 256), ("depth", 6), ("heads", 4), ("steps", 2)):
        p.add_argument(f"--{name}", type=int, default=default)
    add_dtype_flag(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure this length in this process
    add_run_flags(p, "scaling")
    return p.parse_args(argv)


def peak_bytes(device: torch.device) -> int:
    """Peak memory so far: CUDA allocator peak, or this process's peak RSS (Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_one(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per step and peak memory growth of training at length ``args.one`` (in this process)."""
    start(args)
    device, length = torch.device(args.device), args.one
    shape = Shape(args.vocab, args.dim, args.depth, args.heads, length)
    model = ours_decoder(shape)[0].to(device)
    opt = adamw(model)
    ids = torch.randint(0, shape.vocab, (1, length), generator=torch.Generator().manual_seed(0)).to(device)
    batch = as_batch(ids)
    bf16 = args.dtype == "bf16"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = F.cross_entropy(model({}, batch).flatten(0, 1).float(), ids.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    opt.zero_grad(set_to_none=True)
    before = peak_bytes(device)
    step()  # warm-up; also allocates the optimizer state, part of the peak as in real training
    times = [seconds(step, device) for _ in range(args.steps)]
    return {"seconds": median(times), "peak_mib": (peak_bytes(device) - before) / 2**20}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args)))
        return 0
    apply_allocator(args)  # only so the heading names it: each length runs in a child that applies its own
    dtypes, dtype_notes = dtypes_to_measure(args.dtype, args.device)
    shape_args = [f"--{k}={getattr(args, k)}" for k in ("vocab", "dim", "depth", "heads", "steps", "threads")]
    shape_args += ["--system-malloc"] if args.system_malloc else []
    lines = heading(
        "Scaling with sequence length",
        command_line("scaling.py", argv),
        f"our decoder-only core, vocab {args.vocab}, dim {args.dim}, depth {args.depth}, heads {args.heads}, batch 1; "
        f"median of {args.steps} training steps after one warm-up, each length in a fresh process; memory = peak "
        "growth during training (CPU: peak RSS)",
        args.device,
    )
    lines += [
        "",
        "| dtype | T | kernel | s/step | µs/token | µs/token vs first | attention share of FLOPs | peak MiB |",
    ]
    lines.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for dtype in dtypes:
        first = None
        for length in args.lengths:
            command = [sys.executable, __file__, f"--one={length}", f"--dtype={dtype}", f"--device={args.device}"]
            done = subprocess.run([*command, *shape_args], capture_output=True, text=True, env=os.environ.copy())
            if done.returncode != 0:
                failure = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                lines.append(f"| {dtype} | {length} | | failed: {failure} | | | | |")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            per_token = result["seconds"] / length * 1e6
            first = first or per_token
            shape = Shape(args.vocab, args.dim, args.depth, args.heads, length)
            attention = 12 * args.depth * args.dim * length / flops_per_token(shape)  # 12 L H Q T with H Q = D
            torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
            head_dim = args.dim // args.heads
            # the step's (B, H, T, Dh) queries, keys and values: ask the dispatcher itself which kernel it picks
            probe = [torch.empty(1, args.heads, length, head_dim, dtype=torch_dtype, requires_grad=True)] * 3
            kernel = "explicit" if uses_explicit(*probe, dropout_p=0.0, is_causal=True) else "sdpa"
            lines.append(
                f"| {dtype} | {length} | {kernel} | {result['seconds']:.2f} | {per_token:.0f} | "
                f"{per_token / first:.2f}x | "
                f"{attention:.0%} | {result['peak_mib']:,.0f} |"
            )
            print(lines[-1], flush=True)
    return finish("scaling", lines, args.write, args.device, dtype_notes)


if __name__ == "__main__":
    sys.exit(main())
