"""Where the explicit attention path beats SDPA on CPU: the measurements behind ``uses_explicit``'s limits.

Notation: B batch, T tokens (= keys), H heads, Dh head dim.

Part 1, isolated attention: forward + backward of ``explicit_attention`` against ``F.scaled_dot_product_attention``
on the same ``(B, H, T, Dh)`` tensors, B·T = 4096, H 4, Dh 64, for fp32 and bf16, causal and bidirectional, at
several T; interleaved rounds (SDPA, explicit, SDPA, explicit ...), median of per-round ratios. The ``dispatch`` column
is what ``attention`` picks for that case in training. Part 2, whole fp32 decoder training steps (the
``benchmarks/core.py`` model at T 256 and 512, B·T 4096): the dispatch as shipped against the same model with
fp32 routed to SDPA (``uses_explicit`` swapped for one that refuses fp32), A B B A rounds. Part 3, the key
prefixes of causal blocks (``key_prefix``): forward + backward of the explicit path with every prefix a strided
view against every prefix copied contiguous, as part 1, for fp32 and bf16 (bf16 only on CPUs with fast bf16 kernels,
the only ones where it takes the explicit path). Part 4, the rows per causal query block (``causal_block_rows``):
forward + backward of the causal explicit path at each of ``--block-rows`` (of those that make a single block, the
same computation whatever the rows, only one), interleaved in alternating order, for the same dtypes as part 3;
each row's ratio is the shipped choice's speed-up over those rows (> 1: the shipped rows are faster).

    OMP_NUM_THREADS=1 python benchmarks/attention_paths.py [--rounds 7] [--parts 1 2 3 4] [--write]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DTYPES,
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
from core import adamw, train_steps
from peers import Shape, ours_decoder

from modal_tf.core import explicit_attention as explicit

TOKENS, HEADS, HEAD_DIM = 4096, 4, 64
Kernel = Callable[..., Tensor]


def attention_seconds(kernel: Kernel, dtype: torch.dtype, length: int, causal: bool, repeats: int = 3) -> float:
    """Seconds of one forward + backward of ``kernel`` at ``(TOKENS // length, HEADS, length, HEAD_DIM)``."""
    generator = torch.Generator().manual_seed(0)
    shape = (TOKENS // length, HEADS, length, HEAD_DIM)
    q, k, v = (torch.randn(shape, generator=generator).to(dtype).requires_grad_() for _ in range(3))
    grad = torch.randn(shape, generator=generator).to(dtype)

    def run() -> None:
        for _ in range(repeats):
            kernel(q, k, v, is_causal=causal).backward(grad)

    return seconds(run) / repeats


def prefix_seconds(copy: bool, dtype: torch.dtype, length: int) -> float:
    """``attention_seconds`` of the causal explicit path with every key prefix copied (``copy``) or a strided view."""

    def prefix(keys: Tensor, count: int) -> Tensor:
        return keys[:, :count].contiguous() if copy else keys[:, :count]

    shipped = explicit.key_prefix
    explicit.key_prefix = prefix  # for the forward and the backward alike
    try:
        return attention_seconds(explicit.explicit_attention, dtype, length, causal=True)
    finally:
        explicit.key_prefix = shipped


def rows_seconds(rows: int, dtype: torch.dtype, length: int) -> float:
    """``attention_seconds`` of the causal explicit path in query blocks of ``rows`` rows."""
    return attention_seconds(partial(explicit.explicit_attention, block_rows=rows), dtype, length, causal=True)


def step_seconds(length: int, fp32_explicit: bool) -> Callable[[], float]:
    """Seconds per fp32 decoder training step at ``T = length``, with or without the fp32 explicit path."""
    shape = Shape(seq=length)
    model, forward = ours_decoder(shape)
    opt = adamw(model)
    ids = torch.randint(0, shape.vocab, (TOKENS // length, length), generator=torch.Generator().manual_seed(0))
    shipped = explicit.uses_explicit

    def sdpa_for_fp32(q: Tensor, k: Tensor, v: Tensor, dropout_p: float, is_causal: bool = False) -> bool:
        return q.dtype != torch.float32 and shipped(q, k, v, dropout_p, is_causal)

    def run() -> float:
        explicit.uses_explicit = shipped if fp32_explicit else sdpa_for_fp32  # type: ignore[assignment]
        try:
            return seconds(lambda: train_steps(model, forward, opt, ids, ids, 2, bf16=False)) / 2
        finally:
            explicit.uses_explicit = shipped  # type: ignore[assignment]

    return run


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    p.add_argument("--step-lengths", type=int, nargs="+", default=[256, 512])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--parts", type=int, nargs="+", choices=(1, 2, 3, 4), default=[1, 2, 3, 4], help="parts to run")
    p.add_argument("--block-rows", type=int, nargs="+", default=[32, 64, 128, 256], help="part 4's rows per block")
    add_run_flags(p, "attention")
    return p.parse_args(argv)


def part_paths(args: argparse.Namespace) -> list[str]:
    """Part 1: explicit vs SDPA, one attention call per dtype, mask and length."""
    lines = ["", "| dtype | mask | T | SDPA ms | explicit ms | explicit speed-up (paired) | min - max | dispatch |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|---|")
    for dtype in (DTYPES["fp32"], DTYPES["bf16"]):
        for causal in (True, False):
            for length in args.lengths:
                times = interleave(
                    {
                        "sdpa": partial(attention_seconds, F.scaled_dot_product_attention, dtype, length, causal),
                        "explicit": partial(attention_seconds, explicit.explicit_attention, dtype, length, causal),
                    },
                    args.rounds,
                )
                ratios = round_ratios(times["sdpa"], times["explicit"])  # time ratios: > 1 means explicit is faster
                probe = [torch.empty(TOKENS // length, HEADS, length, HEAD_DIM, dtype=dtype, requires_grad=True)] * 3
                picked = "explicit" if explicit.uses_explicit(*probe, dropout_p=0.0, is_causal=causal) else "sdpa"
                lines.append(
                    f"| {str(dtype).removeprefix('torch.')} | {'causal' if causal else 'none'} | {length} | "
                    f"{median(times['sdpa']) * 1e3:.1f} | {median(times['explicit']) * 1e3:.1f} | "
                    f"{median(ratios):.2f}x | {min(ratios):.2f} - {max(ratios):.2f} | {picked} |"
                )
                print(lines[-1], flush=True)
    return lines


def part_steps(args: argparse.Namespace) -> list[str]:
    """Part 2: whole fp32 decoder steps, the shipped dispatch against fp32 on SDPA."""
    lines = ["", "| fp32 decoder step, T | fp32 on SDPA s/step | shipped s/step | shipped speed-up (paired) | range |"]
    lines.append("|---:|---:|---:|---:|---:|")
    for length in args.step_lengths:
        steps = interleave(
            {"sdpa": step_seconds(length, False), "shipped": step_seconds(length, True)}, args.rounds, alternate=True
        )
        lines.append(ab_row(str(length), steps["sdpa"], steps["shipped"]))
        print(lines[-1], flush=True)
    return lines


def part_prefixes(args: argparse.Namespace, dtypes: Sequence[torch.dtype]) -> list[str]:
    """Part 3: causal key prefixes as strided views against contiguous copies."""
    lines = ["", "| dtype | T (causal) | copied ms | view ms | view speed-up (paired) | min - max | shipped |"]
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for dtype in dtypes:
        for length in args.lengths:
            times = interleave(
                {name: partial(prefix_seconds, name == "copy", dtype, length) for name in ("copy", "view")},
                args.rounds,
            )
            ratios = round_ratios(times["copy"], times["view"])
            probe = torch.empty(2, 2, 2)  # (N, S, Dh) keys of this dtype: is their 1-row prefix copied?
            shipped = "copy" if explicit.key_prefix(probe.to(dtype), 1).is_contiguous() else "view"
            lines.append(
                f"| {str(dtype).removeprefix('torch.')} | {length} | {median(times['copy']) * 1e3:.1f} | "
                f"{median(times['view']) * 1e3:.1f} | {median(ratios):.2f}x | {min(ratios):.2f} - {max(ratios):.2f} | "
                f"{shipped} |"
            )
            print(lines[-1], flush=True)
    return lines


def part_block_rows(args: argparse.Namespace, dtypes: Sequence[torch.dtype]) -> list[str]:
    """Part 4: rows per causal query block, each against the shipped ``causal_block_rows``."""
    lines = ["", "| dtype | T (causal) | rows | ms | shipped rows | shipped speed-up (paired) | min - max |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.")
        for length in args.lengths:
            shipped = explicit.causal_block_rows(length, dtype)
            # Keyed by the block each makes (rows >= length all make the one block of length rows), so that block is
            # timed once: under the shipped rows where they make it, else the smallest rows that do
            by_block = {min(rows, length): rows for rows in sorted(args.block_rows, reverse=True)}
            by_block[min(shipped, length)] = shipped
            candidates = by_block.values()
            times = interleave(
                {str(rows): partial(rows_seconds, rows, dtype, length) for rows in sorted(candidates)},
                args.rounds,
                alternate=True,
            )
            for rows in sorted(candidates):
                ratios = round_ratios(times[str(rows)], times[str(shipped)])  # > 1: the shipped rows are faster
                lines.append(
                    f"| {name} | {length} | {rows} | {median(times[str(rows)]) * 1e3:.1f} | {shipped} | "
                    f"{median(ratios):.2f}x | {min(ratios):.2f} - {max(ratios):.2f} |"
                )
                print(lines[-1], flush=True)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.write and sorted(set(args.parts)) != [1, 2, 3, 4]:
        raise SystemExit(f"--write replaces the whole section: run every part (--parts 1 2 3 4), got {args.parts}")
    start(args)
    lines = heading(
        "Attention paths on CPU: explicit vs SDPA",
        command_line("attention_paths.py", argv),
        f"part 1: fwd+bwd of one attention call, B*T {TOKENS}, H {HEADS}, Dh {HEAD_DIM}, {args.rounds} paired rounds "
        "of 3 calls each; part 2: fp32 decoder training steps (core.py model), shipped dispatch vs fp32 on SDPA, "
        f"{args.rounds} A B B A rounds of 2 steps; part 3: causal key prefixes as strided views vs contiguous copies, "
        "as part 1; part 4: rows per causal query block, as part 1",
    )
    # Parts 3 and 4 time bf16 only where it takes the explicit path at all (fast kernels); part 1 times it
    # everywhere, as the measurement behind that choice
    names, notes = dtypes_to_measure("both", flag=None)
    explicit_dtypes = [DTYPES[name] for name in names]
    parts = {
        1: partial(part_paths, args),
        2: partial(part_steps, args),
        3: partial(part_prefixes, args, explicit_dtypes),
        4: partial(part_block_rows, args, explicit_dtypes),
    }
    for number in sorted(set(args.parts)):
        lines += parts[number]()
    return finish("attention", lines, args.write, notes=[f"parts 3 and 4: {note}" for note in notes])


if __name__ == "__main__":
    sys.exit(main())
