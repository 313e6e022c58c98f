"""Training-step throughput of our decoder-only and encoder-only core against its peers, fp32 and bf16-mixed.

Notation: B batch, T tokens, V vocabulary.

Contenders (``benchmarks/peers.py``): ours, a nanoGPT-style SDPA reference, ``nn.TransformerEncoder``,
x-transformers and Hugging Face GPT-2 (decoder only), all at one shape from random init. One timed step is
forward, cross-entropy over every position, backward, ``AdamW.step()`` with the kernel the training layer picks
(fused on CPU and CUDA; ``optimizer.py`` measures the kernels) and ``zero_grad(set_to_none=True)``; ``bf16``
wraps forward and loss in ``torch.autocast``. Contenders run interleaved; the median tokens/s over rounds is
reported, ratios are medians of per-round ratios (``common.paired_ratio``), and model FLOP utilisation is taken
against a GEMM (``common.gemm_flops``) interleaved in the same rounds (its median). Targets (issue #8): fp32 ours
>= the fastest peer and >= 75 % of the GEMM reference; bf16 ours >= 1.2x the fastest peer. This script reports;
it never fails on a slow result.

    OMP_NUM_THREADS=1 python benchmarks/core.py [--mode decoder] [--dtype fp32] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    add_dtype_flag,
    add_run_flags,
    command_line,
    dtypes_to_measure,
    finish,
    gemm_flops,
    heading,
    interleave,
    median,
    paired_ratio,
    round_ratios,
    seconds,
    start,
    training_flops_per_token,
)
from peers import Forward, Shape, contenders

from modal_tf.lit.optim import adamw_kernel

FP32_TARGET, BF16_TARGET, GEMM_TARGET = 1.0, 1.2, 0.75
GEMM = "GEMM"  # the interleaved matmul that stands in for peak FLOP/s
CEILING = "step GEMMs"  # the step's own matrix products at their shapes: what MFU could reach with nothing else


def train_steps(
    model: nn.Module, forward: Forward, opt: torch.optim.Optimizer, ids: Tensor, targets: Tensor, n: int, bf16: bool
) -> None:
    """``n`` optimizer steps of next-token (or per-token) cross-entropy on fixed ``(B, T)`` ids."""
    model.train()
    for _ in range(n):
        autocast = torch.autocast(ids.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            logits = forward(ids)  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    """Every contender's optimizer: AdamW with the kernel ``modal_tf.lit.optim.build_optimizer`` picks."""
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return torch.optim.AdamW(parameters, lr=1e-4, **adamw_kernel(parameters))


def step_gemm_flops(shape: Shape, batch: int, dtype: torch.dtype, device: torch.device) -> Callable[[], float]:
    """FLOP/s of the matrix products one training step of ``shape`` must do, all of them, at their real shapes.

    Per linear layer (B T x in) @ (in x out): forward, input gradient and weight gradient; per layer's attention
    the two products of the forward and the four of the backward at the full (T, T) square, which is what the
    MFU formula counts (``training_flops_per_token``). The products at d 256 are smaller than the 1024^3
    reference, so they run slower: their rate over the reference is the MFU a step doing nothing but its GEMMs
    would reach. The products are the same whether the model is causal or not. Our causal attention skips the
    blocks above the diagonal (``core/explicit_attention.py``) that the formula still credits, so against this
    ceiling ours looks a few points better than the work it does.
    """
    tokens, dim, length, head_dim = batch * shape.seq, shape.dim, shape.seq, shape.dim // shape.heads
    rows = batch * shape.heads  # attention runs as (B H) independent (T, Dh) problems

    def random(*size: int) -> Tensor:
        return torch.randn(*size, device=device).to(dtype)

    products: list[Callable[[], Tensor]] = []
    total_flops = 0.0
    for n_in, n_out, count in ((dim, 3 * dim, shape.depth), (dim, dim, shape.depth), (dim, 4 * dim, shape.depth),
                               (4 * dim, dim, shape.depth), (dim, shape.vocab, 1)):  # fmt: skip
        x, w, g = random(tokens, n_in), random(n_out, n_in), random(tokens, n_out)
        # forward, input gradient, weight gradient
        products += count * [partial(torch.mm, x, w.t()), partial(torch.mm, g, w), partial(torch.mm, g.t(), x)]
        total_flops += count * 3 * 2.0 * tokens * n_in * n_out
    q, scores = random(rows, length, head_dim), random(rows, length, length)  # (B H, T, Dh), (B H, T, T)
    products += shape.depth * [
        partial(torch.bmm, q, q.transpose(1, 2)),  # Q K^T
        partial(torch.bmm, q, q.transpose(1, 2)),  # dP = dO V^T
        partial(torch.bmm, scores, q),  # P V
        partial(torch.bmm, scores.transpose(1, 2), q),  # dV = P^T dO
        partial(torch.bmm, scores, q),  # dQ = dS K
        partial(torch.bmm, scores.transpose(1, 2), q),  # dK = dS^T Q
    ]
    total_flops += shape.depth * 6 * 2.0 * rows * length * length * head_dim

    def run() -> float:
        return total_flops / seconds(lambda: [call() for call in products], device)  # one sync for all of them

    run()  # first calls pick kernels
    return run


def flops_per_token(shape: Shape) -> float:
    """PaLM's 6N + 12LHQT with N = every weight a token passes through (blocks and the tied head)."""
    d, v = shape.dim, shape.vocab
    block = 4 * d * d + 4 * d + 2 * 4 * d * d + 4 * d + d + 4 * d  # qkv + proj, MLP in/out, biases, two LayerNorms
    params = shape.depth * block + 2 * d + v * d  # + final LayerNorm + head (tied to the token table)
    return training_flops_per_token(params, shape.depth, shape.heads, d // shape.heads, shape.seq)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("vocab", 512), ("dim", 256), ("depth", 6), ("heads", 4), ("seq", 256), ("batch", 16)):
        p.add_argument(f"--{name}", type=int, default=default)
    for name, default in (("steps", 3), ("warmup", 1), ("rounds", 5)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--mode", choices=("decoder", "encoder", "both"), default="both")
    add_dtype_flag(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_run_flags(p, "core")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    device = torch.device(args.device)
    shape = Shape(args.vocab, args.dim, args.depth, args.heads, args.seq)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    targets = targets.to(device)
    tokens = args.steps * args.batch * args.seq
    work = flops_per_token(shape)
    modes = ("decoder", "encoder") if args.mode == "both" else (args.mode,)
    dtypes, dtype_notes = dtypes_to_measure(args.dtype, device)
    lines = heading(
        "Core training-step throughput",
        command_line("core.py", argv),
        f"shape: vocab {args.vocab}, dim {args.dim}, depth {args.depth}, heads {args.heads}, seq {args.seq}, batch "
        f"{args.batch}; {args.steps} steps x {args.rounds} interleaved rounds after {args.warmup} untimed round(s); "
        f"MFU = tokens/s x {work / 1e6:.1f} MFLOP/token (6N + 12LHQT) / FLOP/s of a 1024^3 GEMM interleaved in "
        "the same rounds (median; listed per mode and dtype below)",
        device,
    )
    lines += ["", "| mode | dtype | model | params | tokens/s (median) | min - max | MFU | ours / model (paired) |"]
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    verdicts: list[str] = list(dtype_notes)
    for mode in modes:
        models, notes = contenders(shape, causal=mode == "decoder")
        for module, _ in models.values():
            module.to(device)
        params = {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in models.items()}
        optimizers = {name: adamw(m) for name, (m, _) in models.items()}
        for dtype in dtypes:
            bf16 = dtype == "bf16"

            def rate(name: str, bf16: bool = bf16, models: dict = models, optimizers: dict = optimizers) -> float:  # type: ignore[type-arg]
                module, forward = models[name]
                opt = optimizers[name]
                return tokens / seconds(
                    lambda: train_steps(module, forward, opt, ids, targets, args.steps, bf16), device
                )

            gemm_dtype = torch.bfloat16 if bf16 else torch.float32
            timed: dict[str, Callable[[], float]] = {name: partial(rate, name) for name in models}
            timed[GEMM] = partial(gemm_flops, gemm_dtype, device)
            timed[CEILING] = step_gemm_flops(shape, args.batch, gemm_dtype, device)
            rates = interleave(timed, args.rounds, args.warmup)
            gemm_rates = rates.pop(GEMM)
            gemm = median(gemm_rates)
            ceiling_rates = rates.pop(CEILING)
            ceiling = paired_ratio(ceiling_rates, gemm_rates)
            of_ceiling = paired_ratio([rate * work for rate in rates["ours"]], ceiling_rates)
            med = {name: median(r) for name, r in rates.items()}
            paired = {name: paired_ratio(rates["ours"], rates[name]) for name in models}
            for name in models:
                lines.append(
                    f"| {mode} | {dtype} | {name} | {params[name]:,} | {med[name]:,.0f} | {min(rates[name]):,.0f} - "
                    f"{max(rates[name]):,.0f} | {med[name] * work / gemm:.0%} | "
                    f"{paired[name]:.2f}x |"
                )
            # The target is against the fastest peer; on a noisy machine "fastest" is whichever peer ours leads by
            # the least in the paired comparison, so the verdict is the most conservative of the ratios.
            fastest = min((name for name in paired if name != "ours"), key=paired.__getitem__)
            ratio = paired[fastest]
            target = FP32_TARGET if dtype == "fp32" else BF16_TARGET
            tolerance = 0.97 if dtype == "fp32" else 1.0  # the issue asks fp32 for parity "within noise"
            mfu = med["ours"] * work / gemm
            per_round = round_ratios(rates["ours"], rates[fastest])
            verdicts.append(
                f"{mode} {dtype}: ours / fastest peer ({fastest}, smallest paired ratio) = {ratio:.3f}x "
                f"(per round {min(per_round):.2f}-{max(per_round):.2f}x; target >= {target:.1f}x) "
                f"{'ok' if ratio >= target * tolerance else 'BELOW TARGET'}; ours at {mfu:.0%} of the GEMM reference "
                f"({gemm / 1e9:.0f} GFLOP/s, median of {args.rounds} interleaved rounds)"
                + (f" (target >= {GEMM_TARGET:.0%})" if dtype == "fp32" else "")
                + f"; the step's own GEMMs alone run at {median(ceiling_rates) / 1e9:.0f} GFLOP/s, {ceiling:.0%} of it "
                f"(paired): the ceiling at this shape, of which ours reaches {of_ceiling:.0%} (paired)"
            )
        spread = (max(params.values()) - min(params.values())) / max(params.values())
        verdicts.append(f"{mode}: parameter counts differ by at most {spread:.1%}")
        verdicts += [f"{mode}: {note}" for note in notes]
    return finish("core", lines, args.write, device, verdicts)


if __name__ == "__main__":
    sys.exit(main())
