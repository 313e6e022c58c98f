"""Compare the action tokenizers on smooth synthetic robot trajectories.

Notation: S steps per chunk, D action dims, T tokens per chunk.

Episodes are noisy P-controller reaching motions (seeded): the arm moves toward a goal with
velocity ``gain * (goal - position)`` capped at a top speed, plus Gaussian noise, and picks a
new goal every so often; the actions are the velocity commands. Chunks are non-overlapping
``(S, D)`` windows of the episodes. Each tokenizer is fitted on training chunks and measured on
held-out chunks: tokens per chunk, tokens per second of control at ``--hz``, reconstruction
error in action units (mean and max abs against the raw chunk, so clipping counts; max against
the clipped chunk, i.e. ``roundtrip_error``, beside its guaranteed bound ``roundtrip_tolerance``),
and single-thread encode/decode throughput (best of 5). This script reports; it never fails on a result.

    OMP_NUM_THREADS=1 python benchmarks/actions.py [--train 2000] [--test 500]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, finish, heading, seconds

from modal_tf.tokenizers.action_mulaw import ActionMuLawTokenizer
from modal_tf.tokenizers.actions import ActionBinsTokenizer, ActionTokenizer
from modal_tf.tokenizers.fast import ActionFastTokenizer

SHAPES = ((8, 2), (10, 7), (16, 7))  # (S, D): short planar chunks up to 16-step 7-DoF arm chunks
TOKENIZERS: dict[str, Callable[[], ActionTokenizer]] = {
    "action_bins (256)": ActionBinsTokenizer,
    "action_mulaw (1024, raw)": ActionMuLawTokenizer,
    "action_mulaw (1024, z-scored)": lambda: ActionMuLawTokenizer(normalize=True),
    "action_fast (1024, scale 10)": ActionFastTokenizer,
}


def reaching_chunks(count: int, steps: int, dims: int, seed: int) -> list[np.ndarray]:
    """``count`` action chunks ``(S, D)`` cut from noisy P-controller reaching episodes."""
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    while len(chunks) < count:
        position, goal = rng.uniform(-1, 1, dims), rng.uniform(-1, 1, dims)
        gain, top_speed = rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.2)
        actions = np.empty((steps * 12, dims))  # (12 S, D): one episode, 12 chunks long
        for step in range(actions.shape[0]):
            if rng.random() < 0.02:  # a new goal now and then: motions start mid-chunk
                goal = rng.uniform(-1, 1, dims)
            velocity = np.clip(gain * (goal - position), -top_speed, top_speed) + rng.normal(0, 0.005, dims)
            position = position + velocity
            actions[step] = velocity
        chunks.extend(actions.reshape(12, steps, dims))  # (12 S, D) -> 12 chunks (S, D)
    return chunks[:count]


def throughput(function: Callable[[], object], items: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` items per second of ``function``, which handles ``items`` items."""
    best = min(seconds(function) for _ in range(repeats))
    return items / best


def measure(tokenizer: ActionTokenizer, train: list[np.ndarray], test: list[np.ndarray], hz: float) -> dict[str, float]:
    """Fit on ``train``; token counts, errors and throughput on ``test``."""
    tokenizer.fit(train)
    encoded = [tokenizer.encode(chunk).values for chunk in test]
    decoded = [tokenizer.decode(ids).double().numpy() for ids in encoded]
    errors = np.abs(np.stack(decoded) - np.stack(test))  # (N, S, D) against the raw chunks
    tokens = np.array([ids.shape[0] for ids in encoded])
    steps = test[0].shape[0]
    return {
        "tokens": float(tokens.mean()),
        "tokens_max": float(tokens.max()),
        "per_second": float(tokens.mean()) * hz / steps,
        "mae": float(errors.mean()),
        "max": float(errors.max()),
        "quantisation": max(tokenizer.roundtrip_error(x, y) for x, y in zip(test, decoded, strict=True)),
        "bound": tokenizer.roundtrip_tolerance,
        "encode": throughput(lambda: [tokenizer.encode(chunk) for chunk in test], len(test)),
        "decode": throughput(lambda: [tokenizer.decode(ids) for ids in encoded], len(test)),
        "vocab": float(tokenizer.vocab_size),
    }


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="training chunks per shape")
    parser.add_argument("--test", type=int, default=500, help="held-out chunks per shape")
    parser.add_argument("--hz", type=float, default=10.0, help="control rate for tokens per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="replace the 'actions' section of BENCHMARKS.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one Markdown table row per (shape, tokenizer)."""
    args = parse(argv)
    torch.set_num_threads(1)
    lines = heading(
        "Action tokenizers",
        command_line("actions.py", argv),
        f"train {args.train} / test {args.test} chunks per shape, seed {args.seed}, control at {args.hz:g} Hz",
    )
    lines += [
        "",
        "| S x D | tokenizer | vocab | tokens/chunk (max) | tokens/s | mean abs err | max abs err | "
        "max err vs clipped (bound) | encode chunks/s | decode chunks/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for steps, dims in SHAPES:
        train = reaching_chunks(args.train, steps, dims, seed=args.seed)
        test = reaching_chunks(args.test, steps, dims, seed=args.seed + 1)
        scale = float(np.abs(np.stack(train)).mean())
        for name, build in TOKENIZERS.items():
            row = measure(build(), train, test, args.hz)
            lines.append(
                f"| {steps} x {dims} | {name} | {row['vocab']:.0f} | {row['tokens']:.1f} ({row['tokens_max']:.0f}) | "
                f"{row['per_second']:.0f} | {row['mae']:.2e} | {row['max']:.2e} | "
                f"{row['quantisation']:.2e} ({row['bound']:.1e}) | {row['encode']:,.0f} | "
                f"{row['decode']:,.0f} |"
            )
            print(lines[-1], flush=True)
        lines.append(f"|  | mean abs action | | | | {scale:.2e} | | | | |")
    return finish("actions", lines, args.write)


if __name__ == "__main__":
    raise SystemExit(main())
