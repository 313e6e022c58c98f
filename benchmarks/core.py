"""Training-step throughput of the modal_tf decoder-only core against two plain references.

Three causal LMs of the same shape (pre-LayerNorm, GELU MLP 4x, learned positions, tied head):

* ``ours``: ``modal_tf.models.DecoderOnly`` over ``modal_tf.core``;
* ``reference``: a ~60-line nanoGPT-style model (fused qkv, ``F.scaled_dot_product_attention(is_causal=True)``);
* ``nn.TransformerEncoder``: PyTorch's own layers (``norm_first=True``) with a causal mask.

One timed step is forward, cross-entropy, backward, ``AdamW(foreach=True).step()`` and
``zero_grad(set_to_none=True)``; ``bf16`` wraps forward and loss in ``torch.autocast("cpu")``.
Models run interleaved (A B C A B C ...) and the median tokens/s over rounds is reported.
This script reports; it never fails on a slow result.

    OMP_NUM_THREADS=1 python benchmarks/core.py [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modal_tf.core import TransformerConfig
from modal_tf.models import DecoderOnly
from modal_tf.tokenizers import DiscreteTokenizer, TokenBatch, Tokens

MODELS = ("ours", "reference", "nn.TransformerEncoder")
TARGET = 0.95
BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


class IdTokenizer(DiscreteTokenizer):
    """Bare integer ids ``[0, vocab)``, so our model can take any ``--vocab``."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    @property
    def vocab_size(self) -> int:
        return self.vocab

    pad_id, bos_id, eos_id = 0, 1, 2  # type: ignore[assignment]  # unused here; ids are random

    def encode(self, raw: Any) -> Tokens:
        ids = torch.as_tensor(raw, dtype=torch.long)
        return Tokens(ids, torch.arange(ids.shape[0])[:, None])

    def decode(self, ids: Sequence[int] | Tensor) -> list[int]:
        return self.check_ids(ids)

    def config(self) -> dict[str, Any]:
        return {"vocab": self.vocab}


def gpt_init(module: nn.Module) -> None:
    """GPT-2 / nanoGPT init (weights N(0, 0.02), zero biases), as our core uses, so values are alike."""
    for name, param in module.named_parameters(recurse=False):
        if isinstance(module, (nn.Linear, nn.Embedding, nn.MultiheadAttention)):
            nn.init.normal_(param, std=0.02) if "weight" in name else nn.init.zeros_(param)


class RefBlock(nn.Module):
    """nanoGPT block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.fc_proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (
            z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(self.ln_1(x)).split(d, 2)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class RefGPT(nn.Module):
    """nanoGPT: token + learned position embeddings, pre-LN blocks, final LN, tied head."""

    def __init__(self, vocab: int, dim: int, depth: int, heads: int, seq: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(RefBlock(dim, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(gpt_init)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class TorchLM(nn.Module):
    """``nn.TransformerEncoder`` (pre-LN, GELU) as a causal LM with learned positions and tied head."""

    def __init__(self, vocab: int, dim: int, depth: int, heads: int, seq: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(gpt_init)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        return self.head(self.encoder(x, mask=self.mask, is_causal=True))


def build(args: argparse.Namespace, ids: Tensor) -> dict[str, tuple[nn.Module, Callable[[], Tensor]]]:
    """Each model with a closure returning its ``(B, T, V)`` logits on ``ids``."""
    torch.manual_seed(0)
    cfg = TransformerConfig(
        dim=args.dim, depth=args.depth, num_heads=args.heads, mlp_ratio=4.0, mlp="gelu", norm="layernorm",
        dropout=0.0, bias=True, position="learned", max_positions=args.seq,
    )  # fmt: skip
    ours = DecoderOnly(cfg, IdTokenizer(args.vocab))
    coords = torch.arange(args.seq).expand(args.batch, -1)[..., None].contiguous()  # (B, T, 1)
    target = TokenBatch(ids, coords, torch.ones_like(ids, dtype=torch.bool))
    shape = (args.vocab, args.dim, args.depth, args.heads, args.seq)
    ref, tlm = RefGPT(*shape), TorchLM(*shape)
    return {
        "ours": (ours, lambda: ours({}, target)),
        "reference": (ref, lambda: ref(ids)),
        "nn.TransformerEncoder": (tlm, lambda: tlm(ids)),
    }


def run_steps(forward: Callable[[], Tensor], opt: torch.optim.Optimizer, targets: Tensor, n: int, bf16: bool) -> float:
    """Seconds for ``n`` training steps."""
    start = time.perf_counter()
    for _ in range(n):
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            logits = forward()
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def cpu_name() -> str:
    """``platform.processor()``, or the model name from ``/proc/cpuinfo`` where that is empty (Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{platform.processor() or platform.machine()} {line.split(':', 1)[1].strip()}"
    return platform.processor() or platform.machine()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("vocab", 512), ("dim", 256), ("depth", 6), ("heads", 4), ("seq", 256), ("batch", 16)):
        p.add_argument(f"--{name}", type=int, default=default)
    for name, default in (("steps", 5), ("warmup", 2), ("rounds", 3), ("threads", 1)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--dtype", choices=("fp32", "bf16", "both"), default="both")
    p.add_argument("--write", action="store_true", help=f"append the table to {BENCHMARKS_MD.name}")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    models = build(args, ids)
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=True) for name, (m, _) in models.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in models.items()}
    tokens = args.steps * args.batch * args.seq
    dtypes = ("fp32", "bf16") if args.dtype == "both" else (args.dtype,)
    cfg = ", ".join(f"{k} {getattr(args, k)}" for k in ("vocab", "dim", "depth", "heads", "seq", "batch"))
    omp = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{omp}python {shlex.join(sys.argv if argv is None else ['benchmarks/core.py', *argv])}"
    lines = [
        f"### core training-step throughput ({datetime.date.today().isoformat()})",
        "",
        f"`{command}`",
        "",
        f"cpu: {cpu_name()}; torch {torch.__version__}; threads {torch.get_num_threads()}; dtype {args.dtype}; "
        f"{cfg}; {args.steps} steps x {args.rounds} rounds after {args.warmup} warmup steps",
        "",
        "| dtype | model | params | tokens/s (median) | min - max | ours / model |",
        "|---|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for dtype in dtypes:
        bf16 = dtype == "bf16"
        for name, (_, forward) in models.items():
            run_steps(forward, optimizers[name], targets, args.warmup, bf16)
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, (_, forward) in models.items():
                rates[name].append(tokens / run_steps(forward, optimizers[name], targets, args.steps, bf16))
        median = {name: statistics.median(r) for name, r in rates.items()}
        for name in MODELS:
            lines.append(
                f"| {dtype} | {name} | {params[name]:,} | {median[name]:,.0f} | "
                f"{min(rates[name]):,.0f} - {max(rates[name]):,.0f} | {median['ours'] / median[name]:.2f}x |"
            )
        ratio = median["ours"] / median["reference"]
        verdicts.append(
            f"core vs reference: {ratio:.2f}x (target >= {TARGET:.2f}) [{dtype}] "
            f"{'ok' if ratio >= TARGET else 'BELOW TARGET'}; "
            f"core vs nn.TransformerEncoder: {median['ours'] / median['nn.TransformerEncoder']:.2f}x [{dtype}]"
        )
    spread = (max(params.values()) - min(params.values())) / max(params.values())
    note = "equal" if spread == 0 else f"differ by {spread:.2%}" + (" (NOT comparable)" if spread > 0.01 else "")
    lines += ["", f"parameter counts {note}", *verdicts]
    text = "\n".join(lines)
    print(text)
    if args.write:
        header = "" if BENCHMARKS_MD.exists() else "# Benchmarks\n"
        with BENCHMARKS_MD.open("a", encoding="utf-8") as out:
            out.write(f"{header}\n{text}\n")
        print(f"appended to {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
