"""bf16 and fp16 against fp32 on this machine: matrix products, and a whole training step under bf16-mixed.

Notation: B batch, T tokens.

Whether reduced precision pays on a CPU depends on the CPU: with AVX-512 or AMX torch runs bf16 products on
oneDNN's kernels, without them (an AVX2-only CPU) on a loop kernel many times slower than fp32's BLAS
(``modal_tf/core/cpu_support.py``). Part 1 times square 1024³ products and the three products of the attention's
qkv projection, ``(B T, D) @ (D, 3 D)`` at core.py's shape, in nn.Linear's layouts, per dtype, interleaved; part 2
times whole training steps of our decoder (core.py's model and step: forward, loss, backward, AdamW) in fp32 and
under bf16 autocast, A B B A rounds. The ``fast kernels`` column is what ``fast_cpu_matmul`` answers, which is what
the attention dispatch, the training layer's precision warning and the other benchmarks' default dtypes read.

    OMP_NUM_THREADS=1 python benchmarks/precision.py [--rounds 3] [--write]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DTYPES,
    ab_row,
    add_run_flags,
    command_line,
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

from modal_tf.core.cpu_support import fast_cpu_matmul


def product_rate(rows: int, inner: int, cols: int, layout: str, dtype: torch.dtype) -> Callable[[], float]:
    """A callable returning the FLOP/s of one ``(rows, inner) @ (inner, cols)`` product in ``dtype``.

    ``layout`` says how each operand is stored, as BLAS names it: ``N`` as multiplied, ``T`` transposed (a
    contiguous ``(inner, rows)`` or ``(cols, inner)`` tensor, ``.t()``-ed). Fallback kernels care about it.
    """
    generator = torch.Generator().manual_seed(0)
    a = (
        torch.randn(rows, inner, generator=generator)
        if layout[0] == "N"
        else torch.randn(inner, rows, generator=generator).t()
    )
    b = (
        torch.randn(inner, cols, generator=generator)
        if layout[1] == "N"
        else torch.randn(cols, inner, generator=generator).t()
    )
    a, b = a.to(dtype), b.to(dtype)  # .to keeps the strides
    torch.mm(a, b)  # first call: kernel choice
    return lambda: 2.0 * rows * inner * cols / seconds(lambda: torch.mm(a, b))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of part 1, A B B A rounds of part 2")
    p.add_argument("--batch", type=int, default=16)
    add_run_flags(p, "precision")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    shape = Shape()
    tokens = args.batch * shape.seq
    dim, wide = shape.dim, 3 * shape.dim  # the qkv projection, (B T, D) -> (B T, 3 D), and its two gradients
    products = {  # label: rows, inner, cols, layout (nn.Linear: forward x Wᵀ, input gradient g W, weight gradient gᵀ x)
        "1024³, NN": (1024, 1024, 1024, "NN"),
        f"qkv forward, ({tokens}, {dim}) @ ({dim}, {wide}), NT": (tokens, dim, wide, "NT"),
        f"qkv input gradient, ({tokens}, {wide}) @ ({wide}, {dim}), NN": (tokens, wide, dim, "NN"),
        f"qkv weight gradient, ({wide}, {tokens}) @ ({tokens}, {dim}), TN": (wide, tokens, dim, "TN"),
    }
    lines = heading(
        "Reduced precision against fp32",
        command_line("precision.py", argv),
        f"part 1: matrix products per dtype, the qkv projection's three in the layouts nn.Linear's forward and "
        "backward use, "
        f"{args.rounds} interleaved rounds, median GFLOP/s; part 2: our decoder at core.py's shape (batch "
        f"{args.batch}), one training step per measurement, fp32 against bf16 autocast, {args.rounds} A B B A rounds "
        "after one warm-up",
    )
    lines += ["", "| product | dtype | fast kernels | GFLOP/s (median) | vs fp32 (paired) |", "|---|---|---|---:|---:|"]
    for label, size in products.items():
        rates = interleave({name: product_rate(*size, dtype) for name, dtype in DTYPES.items()}, args.rounds)
        for name, dtype in DTYPES.items():
            ratio = median(round_ratios(rates[name], rates["fp32"]))
            lines.append(
                f"| {label} | {name} | {'yes' if fast_cpu_matmul(dtype) else 'no'} | {median(rates[name]) / 1e9:.1f} "
                f"| {ratio:.3f}x |"
            )
            print(lines[-1], flush=True)
    model, forward = ours_decoder(shape)
    optimizer = adamw(model)
    ids = torch.randint(0, shape.vocab, (args.batch, shape.seq), generator=torch.Generator().manual_seed(0))

    def step(bf16: bool) -> Callable[[], float]:
        return lambda: seconds(lambda: train_steps(model, forward, optimizer, ids, ids, 1, bf16))

    steps = interleave({"fp32": step(False), "bf16": step(True)}, args.rounds, alternate=True)
    lines += ["", "| training step | fp32 s/step | bf16-mixed s/step | bf16 speed-up (paired) | range |"]
    lines += ["|---|---:|---:|---:|---:|", ab_row("ours, decoder", steps["fp32"], steps["bf16"])]
    return finish("precision", lines, args.write)


if __name__ == "__main__":
    sys.exit(main())
