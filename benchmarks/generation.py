"""Generation throughput: our KV cache vs recomputing the sequence vs Hugging Face ``generate``.

Notation: B batch, P prompt tokens, N new tokens.

One GPT-2-shaped model size (``peers.Shape``), random init, greedy decoding of exactly N new tokens after a P-token
random prompt (EOS ignored, so every contender produces the same number of tokens):

* ``ours cache``: ``DecoderOnly.generate`` with ``use_cache=True`` (one token per step through a preallocated cache);
* ``ours no cache``: the same loop re-encoding the whole sequence every step (the quadratic reference);
* ``hf generate``: ``GPT2LMHeadModel.generate`` (its own KV cache), from the ``bench`` extra.

Targets (issue #8): cache >= hf generate tokens/s, and >= 5x no-cache at N = 256.

    OMP_NUM_THREADS=1 python benchmarks/generation.py [--batches 1 8] [--new 256] [--write]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    add_run_flags,
    command_line,
    finish,
    heading,
    interleave,
    median,
    paired_ratio,
    seconds,
    start,
)
from peers import Shape, as_batch, available, hf_gpt2, ours_decoder

from modal_tf.models import GenerationConfig

CACHE_VS_HF, CACHE_VS_RECOMPUTE = 1.0, 5.0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("vocab", 512), ("dim", 256), ("depth", 6), ("heads", 4), ("prompt", 16), ("new", 256)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_run_flags(p, "generation")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    device = torch.device(args.device)
    shape = Shape(args.vocab, args.dim, args.depth, args.heads, seq=args.prompt + args.new)
    ours = ours_decoder(shape)[0].to(device).eval()
    hf = hf_gpt2(shape).to(device).eval() if available("transformers") else None
    lines = heading(
        "Generation throughput (greedy)",
        command_line("generation.py", argv),
        f"shape: vocab {shape.vocab}, dim {shape.dim}, depth {shape.depth}, heads {shape.heads}; prompt {args.prompt} "
        f"random ids, exactly {args.new} new tokens (EOS ignored); median of {args.rounds} interleaved rounds after "
        "one warm-up",
        device,
    )
    lines += [
        "",
        "| batch | contender | new tokens/s (median) | min - max | cache / contender (paired) |",
        "|---:|---|---:|---:|---:|",
    ]
    verdicts = []
    for batch in args.batches:
        ids = torch.randint(3, shape.vocab, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
        ids = ids.to(device)
        prompt = as_batch(ids)

        def ours_rate(use_cache: bool, prompt=prompt, batch=batch) -> float:  # type: ignore[no-untyped-def]
            config = GenerationConfig(max_new_tokens=args.new, stop_at_eos=False, use_cache=use_cache)
            produced: list[torch.Tensor] = []
            took = seconds(lambda: produced.append(ours.generate({}, prompt, config).tokens), device)
            if produced[0].shape != (batch, args.new):
                raise RuntimeError(f"ours produced {tuple(produced[0].shape)} tokens, expected {(batch, args.new)}")
            return batch * args.new / took

        contenders: dict[str, Callable[[], float]] = {
            "ours cache": lambda: ours_rate(True),
            "ours no cache": lambda: ours_rate(False),
        }
        if hf is not None:

            def hf_rate(ids=ids, batch=batch) -> float:  # type: ignore[no-untyped-def]
                kwargs = {"max_new_tokens": args.new, "min_new_tokens": args.new, "do_sample": False, "use_cache": True}
                produced: list[torch.Tensor] = []
                with torch.no_grad():
                    took = seconds(lambda: produced.append(hf.generate(ids, **kwargs)), device)
                if produced[0].shape != (batch, args.prompt + args.new):
                    raise RuntimeError(
                        f"hf produced {tuple(produced[0].shape)}, expected {(batch, args.prompt + args.new)}"
                    )
                return batch * args.new / took

            contenders["hf generate"] = hf_rate
        rates = interleave(contenders, args.rounds)
        med = {name: median(r) for name, r in rates.items()}
        for name in contenders:
            lines.append(
                f"| {batch} | {name} | {med[name]:,.0f} | {min(rates[name]):,.0f} - {max(rates[name]):,.0f} | "
                f"{paired_ratio(rates['ours cache'], rates[name]):.2f}x |"
            )
        speedup = paired_ratio(rates["ours cache"], rates["ours no cache"])
        verdicts.append(
            f"batch {batch}: cache / no cache = {speedup:.1f}x (target >= {CACHE_VS_RECOMPUTE:.0f}x) "
            f"{'ok' if speedup >= CACHE_VS_RECOMPUTE else 'BELOW TARGET'}"
        )
        if "hf generate" in med:
            ratio = paired_ratio(rates["ours cache"], rates["hf generate"])
            verdicts.append(
                f"batch {batch}: ours cache / hf generate = {ratio:.2f}x (target >= {CACHE_VS_HF:.1f}x) "
                f"{'ok' if ratio >= CACHE_VS_HF * 0.97 else 'BELOW TARGET'}"
            )
        else:
            verdicts.append("transformers not installed (pip install -e '.[bench]'): hf generate left out")
    return finish("generation", lines, args.write, device, verdicts)


if __name__ == "__main__":
    sys.exit(main())
