"""bf16 and fp16 against fp32 on this machine: matrix products, and a whole training step under bf16-mixed.

Notation: B batch, T tokens.

Whether reduced precision pays on a CPU depends on the CPU: with AVX-512 or AMX torch runs bf16 products on
oneDNN's kernels, without them (an AVX2-only CPU) on a loop kernel many times slower than fp32's BLAS
(``modal_tf/core/cpu_support.py``). Part 1 times square 1024³ products and the three products of the attention's
qkv projection, ``(B T, D) @ (D, 3 D)`` at core.py's shape, in nn.Linear's layouts, per dtype, interleaved; part 2
times whole training steps (core.py's step: forward, loss, backward, AdamW) of our decoder in fp32 and under bf16
autocast — emulated on fp32 kernels where the CPU has no bf16 kernels (``modal_tf/core/emulation.py``), and there
also on torch's own bf16 kernels — and of the reference GPT (plain SDPA) under bf16 autocast, in rounds that
alternate their order. The ``fast kernels`` column is what ``fast_cpu_matmul`` answers, which is what the attention
dispatch, the emulation, the training layer's precision warning and the other benchmarks' default dtypes read.
Part 3 times our decoder's cached generation the same ways. On an AVX2-only CPU the two training steps on torch's
bf16 kernels take ~45-50 s each: the whole script took 8 minutes at the default 3 rounds there.

    OMP_NUM_THREADS=1 python benchmarks/precision.py [--rounds 3] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    DTYPES,
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
from peers import Forward, RefGPT, Shape, as_batch, ours_decoder

from modal_tf.core import native_reduced_precision
from modal_tf.core.cpu_support import fast_cpu_matmul
from modal_tf.models import GenerationConfig

# The "matrix kernels" column: bf16 as modal_tf's layers run it here, and on torch's own kernels where they differ
NATIVE_KERNELS = "torch's bf16 (native_reduced_precision)"


def our_bf16_kernels() -> tuple[str, bool]:
    """How our layers multiply under bf16 on this machine, and whether that is emulation (``core/emulation.py``)."""
    emulated = not fast_cpu_matmul(torch.bfloat16)
    return ("fp32, emulating bf16" if emulated else "bf16"), emulated


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
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per part (part 2 alternates)")
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
        f"{args.rounds} interleaved rounds, median GFLOP/s; part 2: our decoder and the reference GPT at core.py's "
        f"shape (batch {args.batch}), one training step per measurement, {args.rounds} rounds in alternating order "
        f"after one warm-up each; part 3: our decoder's cached generation, {args.rounds} interleaved rounds",
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
    lines += training_steps(shape, args.batch, args.rounds)
    lines += decoding(shape, args.rounds)
    return finish("precision", lines, args.write)


def decoding(shape: Shape, rounds: int, prompt: int = 64, new: int = 64) -> list[str]:
    """Part 3: our decoder's greedy generation with its KV cache (``generation.py``'s contender ``ours cache``), new
    tokens/s in fp32 and under bf16 autocast (as dispatched, and where emulated also on torch's bf16 kernels), at
    batch 1 and 8, interleaved rounds after one warm-up."""
    model = ours_decoder(Shape(shape.vocab, shape.dim, shape.depth, shape.heads, seq=prompt + new))[0].eval()
    config = GenerationConfig(max_new_tokens=new, stop_at_eos=False, use_cache=True)
    our_kernels, emulated = our_bf16_kernels()
    modes = {"fp32": "BLAS", "bf16-mixed": our_kernels}
    if emulated:
        modes["bf16-mixed, native"] = NATIVE_KERNELS
    lines = [
        "",
        f"Generation, prompt {prompt}, {new} new tokens, KV cache:",
        "",
        "| batch | precision | matrix kernels | new tokens/s (median) | vs fp32 (paired) |",
        "|---:|---|---|---:|---:|",
    ]
    for batch in (1, 8):
        ids = torch.randint(3, shape.vocab, (batch, prompt), generator=torch.Generator().manual_seed(batch))

        def rate(mode: str, ids: Tensor = ids) -> float:
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32")
            native = native_reduced_precision() if mode.endswith("native") else contextlib.nullcontext()
            with autocast, native:
                return ids.shape[0] * new / seconds(lambda: model.generate({}, as_batch(ids), config))

        rates = interleave({mode: lambda mode=mode: rate(mode) for mode in modes}, rounds)
        for mode, kernels in modes.items():
            ratio = median(round_ratios(rates[mode], rates["fp32"]))
            lines.append(f"| {batch} | {mode.split(',')[0]} | {kernels} | {median(rates[mode]):.1f} | {ratio:.3f}x |")
            print(lines[-1], flush=True)
    return lines


def training_steps(shape: Shape, batch: int, rounds: int) -> list[str]:
    """Part 2: one training step per measurement, per contender, A B C ... C B A rounds after one warm-up.

    Contenders: our decoder in fp32 and under bf16 autocast (emulated on fp32 kernels where the CPU has no bf16
    kernels: ``modal_tf.core.emulation``); where it has none, also ours on torch's own bf16 kernels
    (``native_reduced_precision``); and the reference GPT (plain SDPA, core.py's fastest-class fp32 peer) under
    bf16 autocast, which is what another library's bf16 step costs on this machine.
    """
    ours, ours_forward = ours_decoder(shape)
    torch.manual_seed(0)
    reference = RefGPT(shape, causal=True)
    optimizers = {id(ours): adamw(ours), id(reference): adamw(reference)}
    ids = torch.randint(0, shape.vocab, (batch, shape.seq), generator=torch.Generator().manual_seed(0))
    our_kernels, emulated = our_bf16_kernels()

    def step(model: nn.Module, forward: Forward, bf16: bool, native: bool = False) -> Callable[[], float]:
        def run() -> None:
            with native_reduced_precision() if native else contextlib.nullcontext():
                train_steps(model, forward, optimizers[id(model)], ids, ids, 1, bf16)

        return lambda: seconds(run)

    contenders = {  # key: (model, precision, matrix kernels, one measured step)
        "ours fp32": ("ours", "fp32", "BLAS", step(ours, ours_forward, False)),
        "ours bf16": ("ours", "bf16-mixed", our_kernels, step(ours, ours_forward, True)),
    }
    if emulated:
        contenders["ours native"] = ("ours", "bf16-mixed", NATIVE_KERNELS, step(ours, ours_forward, True, native=True))
    contenders["reference bf16"] = ("reference GPT", "bf16-mixed", "torch's bf16", step(reference, reference, True))
    steps = interleave({key: work for key, (*_, work) in contenders.items()}, rounds, alternate=True)
    lines = [
        "",
        "| training step | precision | matrix kernels | s/step (median) | speed vs ours fp32 (paired) | range |",
        "|---|---|---|---:|---:|---:|",
    ]
    for key, (model, precision, kernels, _) in contenders.items():
        ratios = round_ratios(steps["ours fp32"], steps[key])
        lines.append(
            f"| {model} | {precision} | {kernels} | {median(steps[key]):.3f} | {median(ratios):.3f}x | "
            f"{min(ratios):.2f} - {max(ratios):.2f} |"
        )
        print(lines[-1], flush=True)
    versus = round_ratios(steps["reference bf16"], steps["ours bf16"])
    lines += ["", f"Ours against the reference GPT, both bf16-mixed (paired): {median(versus):.2f}x."]
    return lines


if __name__ == "__main__":
    sys.exit(main())
