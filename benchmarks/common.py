"""What every benchmark script shares: interleaved timing, machine facts, a GEMM reference, BENCHMARKS.md sections.

Every comparison in ``benchmarks/`` runs its contenders in one process, interleaved (A B C A B C ...) after a
warm-up, and reports medians and ratios; a busy neighbour then slows every contender alike instead of one. Each
script writes its table as a *section* of ``BENCHMARKS.md`` (between ``<!-- bench:NAME -->`` markers), replacing
the previous run of that script, so the file always holds the latest run of every benchmark with the command that
produced it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from statistics import median as median  # re-exported: scripts take all their helpers from here
from typing import TypeVar

import torch

from modal_tf.allocator import allocator_state, keep_freed_memory
from modal_tf.compare.measure import cpu_name
from modal_tf.core.cpu_support import fast_cpu_matmul

ROOT = Path(__file__).resolve().parents[1]
Result = TypeVar("Result")  # what one measurement returns (a rate, seconds, a record of resource use)
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # the scripts' --dtype names
# Sections in the order BENCHMARKS.md shows them; a script passes its key to ``write_section``.
SECTIONS = (
    "core", "breakdown", "precision", "compile", "attention", "allocator", "optimizer", "generation", "vision",
    "scaling", "data", "prefetch", "tokenizer_bpe", "actions",
)  # fmt: skip
HEADER = """# Benchmarks

Measured by `make bench` (or each script alone) on the machine named in each section. Contenders run in one
process, interleaved after warm-up; figures are medians over rounds, ratios are ours / theirs (> 1: ours is
faster; "paired": the median of per-round ratios, robust to the VM's speed drifting between rounds). Each section is
replaced when its script runs again with `--write` on the same kind of machine (CPU model and instruction set, or
GPU, named in its title); runs on other kinds sit beside it. Nothing here is asserted by the test suite: these are
measurements, not pass/fail checks. This shared 2-core VM's speed drifts by tens of percent within minutes (most
under bf16/AMX), so a single ratio is trustworthy to roughly +-10 %.
"""


def machine(device: torch.device | str = "cpu", allocator: bool = True) -> str:
    """One line: device, cores, load, threads, library versions, CPU allocator behaviour (unless ``allocator`` is
    false: the runs happen in child processes that set their own)."""
    device = torch.device(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{where}; {os.cpu_count()} cores, load {load:.1f}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}"
        + (f"; {allocator_state()}" if device.type == "cpu" and allocator else "")
    )


def instruction_set() -> str:
    """The widest CPU instructions torch's kernels use here: ``AMX``, ``AVX512``, else torch's own name (``AVX2``)."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    return torch.backends.cpu.get_cpu_capability()


def machine_label(device: torch.device | str = "cpu") -> str:
    """The kind of machine a run measures, e.g. ``AMD EPYC, AVX2`` or a GPU's name: runs on one kind compare."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = " ".join(re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b|@.*", " ", cpu_name()).split())  # Intel(R) Xeon(R)
    return f"{name}, {instruction_set()}"


def machine_key(device: torch.device | str = "cpu") -> str:
    """``machine_label`` as a BENCHMARKS.md section key: ``amd-epyc-avx2``."""
    return re.sub(r"[^a-z0-9]+", "-", machine_label(device).lower()).strip("-")


def dtypes_to_measure(
    requested: str, device: torch.device | str = "cpu", flag: str | None = "--dtype bf16"
) -> tuple[tuple[str, ...], list[str]]:
    """The dtypes a ``--dtype`` flag asks for, and notes on any left out.

    ``both`` means fp32 and bf16, but bf16 only where it runs on fast kernels (a GPU with bf16 units, a CPU with them:
    ``modal_tf.core.cpu_support``): on an AVX2-only CPU a bf16 step takes ~20x fp32's (``precision.py``), so a
    bf16 row would take hours and measure torch's fallback kernel, not our code. Asking for ``bf16`` alone runs it;
    ``flag`` is how the calling script asks (None: it cannot), named in the note.
    """
    if requested != "both":
        return (requested,), []
    device = torch.device(device)
    if device.type == "cpu":
        fast, why = fast_cpu_matmul(torch.bfloat16), "no fast bf16 matrix kernels (benchmarks/precision.py measures it)"
    elif device.type == "cuda":
        fast, why = torch.cuda.is_bf16_supported(including_emulation=False), "no bf16 units (before Ampere)"
    else:
        fast, why = True, ""  # other accelerators: bf16 is what they are built for
    if fast:
        return ("fp32", "bf16"), []
    note = f"bf16 not measured: this machine ({machine_label(device)}) has {why}" + (
        f"; pass {flag} to measure it anyway" if flag else ""
    )
    return ("fp32",), [note]


def add_dtype_flag(parser: argparse.ArgumentParser) -> None:
    """``--dtype fp32|bf16|both`` (default both), for ``dtypes_to_measure``."""
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "both"),
        default="both",
        help="both: fp32, and bf16 where it runs on fast kernels (common.dtypes_to_measure)",
    )


def add_run_flags(parser: argparse.ArgumentParser, section: str, allocator: bool = True) -> None:
    """The flags of every timing script: ``--threads`` (torch intra-op threads, default 1), ``--write`` (replace
    the BENCHMARKS.md ``section``) and, unless ``allocator`` is false, ``--system-malloc`` (measure with glibc's
    default behaviour instead of ``keep_freed_memory``, the CLI's). ``start`` applies them."""
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--write", action="store_true", help=f"replace the '{section}' section of BENCHMARKS.md")
    if allocator:
        parser.add_argument(
            "--system-malloc",
            action="store_true",
            help="keep the system malloc's defaults (CLI training keeps freed memory; see modal_tf.allocator)",
        )


def start(args: argparse.Namespace) -> None:
    """Apply ``add_run_flags``'s flags to this process: the thread count, then the allocator (``apply_allocator``)."""
    torch.set_num_threads(args.threads)
    if hasattr(args, "system_malloc"):
        apply_allocator(args)


def apply_allocator(args: argparse.Namespace) -> None:
    """Keep freed memory in this process, as CPU training through the CLI does, unless ``--system-malloc``.

    Process-wide, so every contender of a script runs with the same allocator behaviour.
    """
    if not args.system_malloc:
        keep_freed_memory()


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The shell command that reproduces this run (with ``OMP_NUM_THREADS`` when it was set)."""
    omp = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    args = sys.argv[1:] if argv is None else list(argv)
    return f"{omp}python {shlex.join([f'benchmarks/{script}', *args])}"


def seconds(work: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Wall seconds of one call of ``work`` (synchronising CUDA so queued kernels are counted)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    work()
    sync()
    return time.perf_counter() - start


def interleave(
    contenders: Mapping[str, Callable[[], Result]], rounds: int, warmup: int = 1, alternate: bool = False
) -> dict[str, list[Result]]:
    """Call each contender ``warmup`` times, then once per round in turn (A B C A B C ...).

    Args:
        contenders: name -> a callable that runs one measurement and returns its result (e.g. a rate).
        rounds: Measurements per contender.
        warmup: Unrecorded calls per contender first (allocator, autotuning, lazy init).
        alternate: Run every other round in reverse order (A B, B A, A B ...), so no contender always goes first.

    Returns:
        name -> the ``rounds`` results, in order.
    """
    for work in contenders.values():
        for _ in range(warmup):
            work()
    results: dict[str, list[Result]] = {name: [] for name in contenders}
    order = list(contenders.items())
    for index in range(rounds):
        for name, work in order[::-1] if alternate and index % 2 else order:
            results[name].append(work())
    return results


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Median over rounds of ``ours[i] / theirs[i]``: rates measured side by side in one round are compared.

    On a shared VM the machine's speed drifts by tens of percent within minutes; a ratio of medians mixes fast and
    slow rounds, while each per-round ratio compares two runs a few seconds apart.
    """
    return median(round_ratios(ours, theirs))


def round_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """``ours[i] / theirs[i]`` per round; their spread says how far one paired ratio can be trusted."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"need equally many rounds on both sides, got {len(ours)} and {len(theirs)}")
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def ab_row(label: str, baseline: Sequence[float], candidate: Sequence[float]) -> str:
    """A table row ``| label | baseline s | candidate s | speed-up (paired) | range |`` from per-round seconds
    measured side by side (``interleave``); speed-up > 1 means the candidate is faster."""
    ratios = round_ratios(baseline, candidate)
    return (
        f"| {label} | {median(baseline):.3f} | {median(candidate):.3f} | {median(ratios):.3f}x | "
        f"{min(ratios):.2f} - {max(ratios):.2f} |"
    )


def gemm_flops(dtype: torch.dtype, device: torch.device | str = "cpu", size: int = 1024, repeats: int = 3) -> float:
    """Achieved FLOP/s of ``repeats`` square ``(size, size) @ (size, size)`` matmuls: the machine's practical peak.

    Model FLOP utilisation (MFU, PaLM appendix B, https://arxiv.org/abs/2204.02311) divides a model's useful
    FLOP/s by the hardware peak; on a shared CPU the datasheet peak is meaningless, so a large GEMM at the same
    thread count stands in for it. Its rate drifts by tens of percent between minutes on a shared VM, so callers
    interleave it with the models (``interleave``) and divide by its median over the same rounds.
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: oneDNN / cuBLAS pick their kernels on the first call

    def run() -> None:
        for _ in range(repeats):
            torch.mm(a, b)

    return 2 * size**3 * repeats / seconds(run, device)


def training_flops_per_token(params: int, layers: int, heads: int, head_dim: int, seq: int) -> float:
    """PaLM's estimate of training FLOPs per token: ``6 N + 12 L H Q T`` (N non-embedding params).

    ``6 N``: forward (2 N) plus backward (4 N) multiply-adds of every weight; ``12 L H Q T``: the attention
    scores and their weighted sum, which grow with the sequence length ``T`` (PaLM, appendix B). A causal model
    does half of that attention work in principle; SDPA's CPU kernels compute the full square, and our causal
    explicit path skips only the blocks above the diagonal (at T 256, 3/8 of the square in fp32's 64-row blocks,
    1/4 in bf16's 128-row ones), so the full term is credited to every model alike: ours' figure is a few points
    generous.
    """
    return 6 * params + 12 * layers * heads * head_dim * seq


def write_section(key: str, machine: str, text: str) -> Path:
    """Put ``text`` into ``BENCHMARKS.md`` as the section ``key`` of ``machine`` (a ``machine_key``), replacing that
    machine's previous run; sections follow ``SECTIONS`` (names it lacks last), kinds of machine in name order."""
    if key not in SECTIONS:
        raise ValueError(f"key must be one of {SECTIONS}, got {key!r}")
    existing = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.is_file() else HEADER
    marker = r"<!-- bench:(\w+)@([\w-]+) -->\n(.*?)<!-- /bench:\1@\2 -->\n"
    found = {(name, kind): body for name, kind, body in re.findall(marker, existing, flags=re.S)}
    if len(found) != existing.count("<!-- bench:"):  # a section this would drop: refuse, never lose a record
        raise ValueError(
            f"{BENCHMARKS_MD} holds {existing.count('<!-- bench:')} section markers but only {len(found)} read as "
            "'<!-- bench:NAME@KIND -->' ... '<!-- /bench:NAME@KIND -->' pairs; tag or close the others first"
        )
    found[key, machine] = f"{text.rstrip()}\n"
    order = {name: index for index, name in enumerate(SECTIONS)}
    body = "".join(
        f"\n<!-- bench:{name}@{kind} -->\n{found[name, kind]}<!-- /bench:{name}@{kind} -->\n"
        for name, kind in sorted(found, key=lambda pair: (order.get(pair[0], len(SECTIONS)), pair))
    )
    BENCHMARKS_MD.write_text(HEADER + body, encoding="utf-8")
    return BENCHMARKS_MD


def finish(
    section: str, lines: Sequence[str], write: bool, device: torch.device | str = "cpu", notes: Sequence[str] = ()
) -> int:
    """Print a script's report (``lines``, then ``notes`` as a list) and, if ``write``, make it the BENCHMARKS.md
    ``section`` of this kind of machine (``machine_key(device)``); the exit code."""
    text = "\n".join([*lines, *(["", *(f"- {note}" for note in notes)] if notes else [])])
    print(text)
    if write:
        print(f"wrote {write_section(section, machine_key(device), text)}")
    return 0


def heading(
    title: str, command: str, details: str, device: torch.device | str = "cpu", allocator: bool = True
) -> list[str]:
    """The first lines of every section: title with the kind of machine and the date, the command, the machine in
    detail, the setup."""
    where = machine(device, allocator)
    title = f"## {title}, {machine_label(device)} ({datetime.date.today().isoformat()})"
    return [title, "", f"`{command}`", "", where, "", details]
