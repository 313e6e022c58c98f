"""Encode throughput of the ``bpe`` tokenizer wrapper against Hugging Face ``tokenizers`` called directly.

Corpus: every topic of the standard library's ``pydoc_data.topics`` (~465k characters of Python docs, no download).
One ``BPETokenizer`` is fitted on it; the reference is a ``tokenizers.Tokenizer`` rebuilt from the same fitted
JSON with the same settings (``encode_special_tokens``), so both run the very same merges. Four ways to encode
the corpus, run interleaved (A B C D A B C D ...) with the median MB/s (UTF-8 bytes in) over rounds reported:

* ``hf encode``: ``hf.encode(text, add_special_tokens=False).ids`` per text (a Python list of ids);
* ``ours encode``: ``BPETokenizer.encode(text)`` per text (input checks, int64 ``(T,)`` ids and ``(T, 1)`` coords);
* ``hf encode_batch`` / ``ours encode_batch``: the same over the whole corpus in one call (Rust threads).

The wrapper's cost is ``1 - ours / hf``, with ``ours / hf`` paired (the median of per-round ratios); target < 10 %.
As two noisy rates give a noisy difference, the wrapper's own work (checks and tensor building on precomputed ids) is
also timed alone. Fit time (median of ``--fit-rounds``) and fit determinism are reported too. This script reports;
it never fails on a slow result.

    OMP_NUM_THREADS=1 python benchmarks/tokenizer_bpe.py [--vocab 4096] [--rounds 7] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from pydoc_data.topics import topics

import tokenizers
from tokenizers import Tokenizer as HFTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_run_flags, command_line, finish, heading, interleave, paired_ratio, round_ratios, seconds, start

from modal_tf.tokenizers.bpe import BPETokenizer, _check_text

TARGET_OVERHEAD = 0.10


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=4096, help="vocab_size to fit")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds of each encoder, interleaved")
    p.add_argument("--fit-rounds", type=int, default=3, help="fits to time (and compare for determinism)")
    add_run_flags(p, "tokenizer_bpe", allocator=False)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    texts = [topics[key] for key in sorted(topics)]
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6

    fits, states = [], []
    for _ in range(args.fit_rounds):
        ours = BPETokenizer(vocab_size=args.vocab)
        fits.append(seconds(lambda: ours.fit(texts)))  # noqa: B023 - called at once, inside this iteration
        states.append(ours.fitted_state())
    deterministic = all(state == states[0] for state in states)
    reference = HFTokenizer.from_str(states[0]["tokenizer_json"])
    reference.encode_special_tokens = True  # as BPETokenizer sets it, so both split the text identically

    encoders: dict[str, Callable[[], object]] = {
        "hf encode": lambda: [reference.encode(text, add_special_tokens=False).ids for text in texts],
        "ours encode": lambda: [ours.encode(text) for text in texts],
        "hf encode_batch": lambda: [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)],
        "ours encode_batch": lambda: ours.encode_batch(texts),
    }
    same = all(
        ours.encode(text).values.tolist() == reference.encode(text, add_special_tokens=False).ids for text in texts
    )
    tokens = sum(len(reference.encode(text, add_special_tokens=False).ids) for text in texts)
    # One warm-up call each (thread pools, allocator, caches), then interleaved rounds.
    rates = interleave(
        {name: (lambda encode=encode: megabytes / seconds(encode)) for name, encode in encoders.items()}, args.rounds
    )
    median = {name: statistics.median(r) for name, r in rates.items()}
    # The wrapper's own work (input checks, list -> tensors) timed alone on precomputed ids: a quieter estimate than
    # the difference of two noisy rates, and the part that stays serial when encode_batch runs on many cores.
    ids = [encoding.ids for encoding in reference.encode_batch(texts, add_special_tokens=False)]
    alone = statistics.median(
        seconds(lambda: [(_check_text(t, "text"), ours._tokens(i)) for t, i in zip(texts, ids, strict=True)])
        for _ in range(args.rounds)
    )

    lines = heading(
        "BPE tokenizer encode throughput",
        command_line("tokenizer_bpe.py", argv),
        f"tokenizers {tokenizers.__version__}; corpus pydoc_data.topics: {len(texts)} texts, {megabytes:.3f} MB, "
        f"{tokens:,} tokens at vocab {ours.vocab_size}; "
        f"{args.rounds} rounds",
    )
    lines += [
        "",
        f"fit: {statistics.median(fits):.3f} s median of {args.fit_rounds} "
        f"({'deterministic' if deterministic else 'NOT deterministic'}); ours == hf ids on every text: {same}",
        "",
        "| encoder | MB/s (median) | min - max | ours / hf (paired) | per round |",
        "|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for mode in ("encode", "encode_batch"):
        ours_rates, hf_rates = rates[f"ours {mode}"], rates[f"hf {mode}"]
        ratio = paired_ratio(ours_rates, hf_rates)
        spread = round_ratios(ours_rates, hf_rates)
        for who in ("hf", "ours"):
            name = f"{who} {mode}"
            paired = f"{ratio:.3f} | {min(spread):.2f} - {max(spread):.2f}" if who == "ours" else "1.000 |"
            lines.append(
                f"| {name} | {median[name]:.2f} | {min(rates[name]):.2f} - {max(rates[name]):.2f} | {paired} |"
            )
        verdicts.append(
            f"wrapper cost [{mode}]: {1 - ratio:.1%} (target < {TARGET_OVERHEAD:.0%}) "
            f"{'ok' if 1 - ratio < TARGET_OVERHEAD else 'ABOVE TARGET'}"
        )
    hf_seconds = megabytes / median["hf encode"]
    verdicts.append(f"wrapper alone: {alone * 1e3:.1f} ms per corpus = {alone / hf_seconds:.1%} of hf encode's time")
    return finish("tokenizer_bpe", [*lines, "", *verdicts], args.write)


if __name__ == "__main__":
    sys.exit(main())
