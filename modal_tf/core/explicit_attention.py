"""Attention dispatch: ``F.scaled_dot_product_attention``, or explicit batched GEMMs for training on CPU.

Notation: B batch, H heads, T query tokens, S key tokens, Dh head dim, N = B * H.

On CPU, SDPA's fused (flash) kernel computes its reduced-precision backward far from the speed of the matrix
units: at B 16, H 4, T 256, Dh 64 in bf16 one forward + backward takes ~40 ms, while the same attention written
as three batched GEMMs and a softmax — which oneDNN runs on AMX/AVX-512-BF16 — takes ~12 ms. Under
``bf16-mixed`` that was a third of a small GPT's step. So training in bf16/fp16 on CPU goes through
``ExplicitAttention`` (an ``autograd.Function`` with a hand-written backward, so autograd does not keep the
intermediate scores twice), and so does fp32 *causal* training on CPU with rows of at most
``MAX_FP32_CAUSAL_KEYS`` keys, where skipping the scores above the diagonal (below) beats SDPA's well-tuned fp32
kernel. Everything else — fp32 bidirectional or longer rows, fp64, inference, dropout, any CUDA device, score
matrices above ``MAX_SCORE_BYTES`` where the flash kernel's O(T) memory matters, or rows longer than ``MAX_KEYS``
keys (``MAX_CAUSAL_KEYS`` when causal) where the explicit path turned slower — calls SDPA unchanged.

bf16/fp16 on a CPU without fast kernels for that dtype (``cpu_support.fast_cpu_matmul``: an AVX2-only CPU, say)
is emulated (``emulation``): the inputs are rounded to the reduced dtype, the fp32 dispatch above runs on them and
the output is rounded back. Both reduced-precision paths are slow there, since their GEMMs fall back to a loop
kernel: SDPA's bf16 kernel took 4x its fp32 time at 128 keys and was still 1.4-2.0x (causal) and 2.3-2.5x
(bidirectional) faster than the explicit path from 128 to 2,048 keys (bf16, forward + backward, one thread, AMD
EPYC; ``benchmarks/attention_paths.py``). Under ``native_reduced_precision()`` such inputs go to SDPA.

Causal attention is computed in query blocks (``causal_blocks``), each scoring only the keys its rows can
reach, so the scores above the block diagonal — almost half the square — are never computed, stored or
soft-maxed (the same block skipping as FlashAttention's causal kernels, Dao 2022,
https://arxiv.org/abs/2205.14135, here at the granularity of batched GEMMs).

Semantics match SDPA: ``mask`` is boolean (True = may attend) broadcastable to ``(B, H, T, S)``; ``is_causal``
masks keys after each query (top-left aligned, as SDPA); the scale is ``Dh ** -0.5``; a query with no key it
may attend to gets a zero output (and zero gradients), as SDPA's CPU kernels return.

Precision trade-off: scores ``Q Kᵀ`` are rounded to the input precision before the softmax (which accumulates in
fp32 inside the kernel), as unfused attention under autocast does; SDPA's fused kernel keeps scores in fp32. The
error against fp64 is close to SDPA's for spread-out attention and up to ~2x SDPA's for sharply peaked attention
(score std ~9) — still bf16-level (~1e-2 relative), which bf16 mixed-precision training tolerates by design
(Micikevicius et al. 2018, https://arxiv.org/abs/1710.03740). fp32 scores would make ``Q Kᵀ`` an fp32 GEMM and
cost most of the speed-up. Tests bound the error for both regimes. In fp32 both paths are fp32 throughout.

Memory: the explicit path keeps each layer's probabilities (``(N, T, S)``, about half that when causal) for
backward (SDPA keeps O(T) row statistics); ``MAX_SCORE_BYTES`` caps the full square per call, so a deep model
holds up to depth x that.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from modal_tf.core.cpu_support import LOW_PRECISION, fast_cpu_matmul
from modal_tf.core.emulation import emulated_dtype, rounded

# The explicit path keeps the (N, T, S) probabilities for backward; above this size per call, SDPA's flash kernel
# (which keeps O(T) statistics instead) is used, so long sequences keep SDPA's memory footprint.
MAX_SCORE_BYTES = 64 * 2**20
# Measured fwd+bwd, bf16, one thread, B*T = 4096, H 4, Dh 64 (explicit vs SDPA). Bidirectional: 3.8x faster at
# T 128, 1.5x at 256, 1.1x at 384 and 512, but 2x *slower* at 1024 (softmax over long rows outgrows the caches).
# Causal, with query blocks: 1.3-2x faster from 256 to 1024 keys, 1.2-1.5x at 2048. The bidirectional slowdown
# at 1024 is page faults on the large score tensors: with freed memory kept (``modal_tf.allocator``, the CLI's
# default on CPU) explicit measured 1.69x *faster* at 1024 and 1.63x at 2048, with the system malloc 0.80x at 1024
# (benchmarks/attention_paths.py, with and without --system-malloc). The core cannot see the allocator setting,
# so the limit stays where both are safe.
MAX_KEYS = 512
MAX_CAUSAL_KEYS = 2048
# fp32, same setup (paired, 7 rounds): SDPA's fp32 kernel is well tuned, so only causal block skipping wins, and
# only while rows fit the caches: causal 1.06-1.22x at 256 keys and 1.22-1.35x at 512, 0.95-1.10x at 1024,
# 0.82-0.92x at 2048; bidirectional 0.71-0.99x from 256 keys up. Whole fp32 decoder step (benchmarks/core.py
# model, B*T 4096), seven runs: 0.96-1.06x at T 256, 1.06-1.14x at T 512. With the key prefixes as views
# (``key_prefix``), causal 1.16-1.33x from 128 to 512 keys, 0.98-1.05x at 1024 (ranges 0.87-1.23), 0.82-0.92x at
# 2048: the limit stays. Reproduce: benchmarks/attention_paths.py. These are the Intel Xeon (AMX) figures; on an
# AVX2-only AMD EPYC (7 rounds) causal explicit was 1.06-1.47x from 128 to 512 keys and still 1.21x at 1024, 1.09x
# at 2048 (bidirectional 1.00-1.04x): the limit is where both machines gain.
MAX_FP32_CAUSAL_KEYS = 512


def uses_explicit(q: Tensor, k: Tensor, v: Tensor, dropout_p: float, is_causal: bool = False) -> bool:
    """Whether ``attention`` takes the explicit path for these ``(B, H, T, Dh)`` / ``(B, H, S, Dh)`` inputs."""
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not training or dropout_p != 0.0 or q.device.type != "cpu" or not k.dtype == q.dtype == v.dtype:
        return False
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") != q.dtype:
        return False  # autocast would recast the kernel's GEMMs to another dtype than its softmax and outputs
    if q.dtype in LOW_PRECISION:
        if not fast_cpu_matmul(q.dtype):
            return False  # the batched GEMMs would run on torch's loop kernel, slower than SDPA's (also slow) one
        max_keys = MAX_CAUSAL_KEYS if is_causal else MAX_KEYS
    elif q.dtype == torch.float32 and is_causal:
        max_keys = MAX_FP32_CAUSAL_KEYS
    else:
        return False
    batch, heads, queries, _ = q.shape
    score_bytes = batch * heads * queries * k.shape[2] * q.element_size()
    return 0 < score_bytes <= MAX_SCORE_BYTES and k.shape[2] <= max_keys


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False
) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)``, faster for some CPU training.

    The explicit path runs for bf16/fp16 training and for causal fp32 training with short rows (``uses_explicit``);
    bf16/fp16 where the CPU has no kernels for it runs the fp32 dispatch on rounded inputs (module docstring);
    functorch transforms (``torch.func``) are not supported through it, as it is an old-style
    ``autograd.Function``; ``torch.compile`` traces it, forward and backward, without a graph break (tested with
    inductor and ``fullgraph=True``).

    Args:
        q: ``(B, H, T, Dh)`` queries.
        k: ``(B, H, S, Dh)`` keys.
        v: ``(B, H, S, Dh)`` values.
        mask: Bool, broadcastable to ``(B, H, T, S)``; True = may attend.
        dropout_p: Attention dropout probability (the explicit path is only taken at 0).
        is_causal: Mask keys after each query (top-left aligned; not combined with ``mask``, as in SDPA).

    Returns:
        ``(B, H, T, Dh)``.
    """
    if mask is not None and is_causal:
        raise ValueError("attention: pass either mask or is_causal=True, not both (as F.scaled_dot_product_attention)")
    dtype = emulated_dtype(q)
    if dtype is not None:  # bf16/fp16 on a CPU without kernels for it: the fp32 paths on rounded inputs (emulation)
        if mask is not None and mask.dtype != torch.bool:
            mask = rounded(mask, dtype)
        with torch.autocast("cpu", enabled=False):  # else autocast would recast SDPA's inputs to the slow dtype
            out = attention(rounded(q, dtype), rounded(k, dtype), rounded(v, dtype), mask, dropout_p, is_causal)
        return out.to(dtype)  # (B, H, T, Dh)
    if not uses_explicit(q, k, v, dropout_p, is_causal):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    return explicit_attention(q, k, v, mask, is_causal)


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, is_causal: bool = False, block_rows: int | None = None
) -> Tensor:
    """The explicit path at any dtype and device (``attention`` picks it; tests compare it with SDPA in fp64).

    ``block_rows``: query rows per causal block (default ``causal_block_rows(T, dtype)``); ignored without
    ``is_causal``.
    """
    queries, keys = q.shape[2], k.shape[2]
    if is_causal:  # top-left causal: every query reaches key 0, so no row is ever fully masked
        rows = causal_block_rows(queries, q.dtype) if block_rows is None else block_rows  # 0 is refused, not defaulted
        return ExplicitAttention.apply(q, k, v, causal_blocks(queries, keys, rows, q.dtype, q.device), None)  # type: ignore[no-any-return]
    reachable, bias = None, None
    if mask is not None:
        reachable = mask.any(-1, keepdim=True)  # (B|1, H|1, T, 1): False where a query may attend to nothing
        bias = additive_bias(mask, q.dtype)
    return ExplicitAttention.apply(q, k, v, (Block(0, queries, keys, 0, bias),), reachable)  # type: ignore[no-any-return]


def causal_block_rows(queries: int, dtype: torch.dtype) -> int:
    """Query rows per causal block, as measured fastest (fwd+bwd, one thread, B*T 4096, H 4, Dh 64, Intel Xeon with
    AMX; ``benchmarks/attention_paths.py`` part 4).

    Smaller blocks skip more of the square above the diagonal but make smaller GEMMs. fp32 (MKL): 64 rows, 32 or 128
    rows 1.03-1.15x slower from 128 to 512 keys (where fp32 takes this path). bf16 (oneDNN, whose small GEMMs cost
    more per FLOP): 128 rows up to 512 queries, 1.08-1.22x faster than 64 (256 rows no faster: 1.00-1.12x slower);
    256 beyond, 2-6 % faster than 128 at 1,024 (five runs) and 1.09-1.12x at 2,048. fp16 follows bf16, unmeasured.
    """
    if dtype in LOW_PRECISION:
        return 128 if queries <= 512 else 256
    return 64


class Block(NamedTuple):
    """Queries ``start:stop`` attend keys ``0:keys``; ``bias`` is added to score columns ``bias_from:keys``."""

    start: int
    stop: int
    keys: int
    bias_from: int
    bias: Tensor | None  # broadcastable to (B, H, stop - start, keys - bias_from)


def additive_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where ``mask`` allows, the dtype's most negative finite value where it forbids.

    Not -inf, so a fully masked row never sums -inf + -inf; such rows (fp16 may still overflow them to -inf and NaN)
    are zeroed after the softmax, as SDPA's CPU kernels return.
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def causal_blocks(queries: int, keys: int, rows: int, dtype: torch.dtype, device: torch.device) -> tuple[Block, ...]:
    """Top-left causal attention as ``rows``-row query blocks that score only the keys they can reach.

    Rows ``s:e`` reach keys ``0:min(e, S)``; every key before ``s`` is allowed for all of them, so only the
    ``(e - s)``-wide diagonal part needs the triangular bias. Scores above the diagonal blocks are never computed:
    at T = S = 256, 64-row blocks compute 10/16 of the square (128-row blocks 12/16), and the softmax runs over
    shorter rows.
    """
    if rows < 1:
        raise ValueError(f"rows must be a positive number of query rows per block, got {rows}")
    blocks = []
    for start in range(0, queries, rows):
        stop = min(start + rows, queries)
        reach = min(stop, keys)
        bias = None
        if start < reach:  # rows past the last key see every key: no bias
            allowed = torch.ones(stop - start, reach - start, dtype=torch.bool, device=device).tril()
            bias = additive_bias(allowed, dtype)  # (rows, reach - start), broadcast over (B, H)
        blocks.append(Block(start, stop, reach, min(start, reach), bias))
    return tuple(blocks)


def key_prefix(keys: Tensor, count: int) -> Tensor:
    """The first ``count`` rows of contiguous ``(N, S, Dh)`` ``keys``, as the batched GEMMs take them fastest.

    On CPU, fp32/fp64 batched GEMMs (MKL) take the plain slice ``keys[:, :count]`` — batch stride S * Dh, rows
    contiguous — as it is, so it stays a view: without the copy the fp32 causal attention call (forward +
    backward, B*T 4096) measured 1.05-1.22x faster at the 128-512 keys where fp32 takes this path (1.05-1.25x up
    to 2,048). Reduced-precision batched GEMMs (oneDNN) take only contiguous or last-two-dims-transposed operands
    and copy anything else — its transpose element by element, several times slower than a row-chunk ``memcpy`` —
    so for bf16/fp16 the prefix is copied contiguous here (bf16 views measured 0.89-1.01x with 64-row blocks and
    0.92-1.03x with 128/256-row ones: no faster; fp16 follows bf16 unmeasured). fp32 under a oneDNN reduced-precision
    matmul mode would copy the views itself, also unmeasured. No copy when ``count`` is every row. Reproduce:
    ``benchmarks/attention_paths.py`` (part 3).
    """
    prefix = keys[:, :count]
    return prefix.contiguous() if keys.dtype in LOW_PRECISION else prefix


def scaled_into(out: Tensor, source: Tensor, scale: float) -> Tensor:
    """Write ``source * scale`` into ``out`` (any strides) in one pass; returns ``out``.

    Eager, that is ``torch.mul(..., out=out)``. Under ``torch.compile`` it is ``out.copy_(source * scale)``: dynamo
    does not trace ``out=`` (a graph break) and inductor (torch 2.14) gave the result the wrong strides; inductor
    fuses the product and the copy into one pass anyway.
    """
    if torch.compiler.is_compiling():
        return out.copy_(source * scale)
    return torch.mul(source, scale, out=out)


class ExplicitAttention(torch.autograd.Function):
    """softmax(Q Kᵀ / sqrt(Dh) + bias) V as batched GEMMs over query blocks, with the textbook backward.

    With ``P = softmax(S)``, ``O = P V``: ``dV = Pᵀ dO``, ``dP = dO Vᵀ``, ``dS = P ⊙ (dP - rowsum(dP ⊙ P))``,
    ``dQ = dS K / sqrt(Dh)``, ``dK = dSᵀ Q / sqrt(Dh)``. The scale is folded into the copy that gathers each
    block's queries for the batched GEMM, rather than applied to the (at Dh 64, T 256) four-times-larger scores.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, blocks: tuple[Block, ...], reachable: Tensor | None
    ) -> Tensor:
        batch, heads, queries, head_dim = q.shape
        keys = k.shape[2]
        scale = head_dim**-0.5
        # Contiguous once here (reshape is a view when B or H is 1), so the last block's prefix is k3 itself and
        # forward and backward never copy the full keys again.
        k3 = k.reshape(batch * heads, keys, head_dim).contiguous()  # (N, S, Dh)
        v3 = v.reshape(batch * heads, keys, head_dim).contiguous()  # (N, S, Dh)
        # Written in (B, T, H, Dh) memory order, so the caller's merge of the heads into (B, T, D) is a free view.
        out = q.new_empty(batch, queries, heads, head_dim)
        q_blocks, probs = [], []
        for block in blocks:
            rows = block.stop - block.start
            # One pass gathers the block's queries into contiguous (N, rows, Dh) and applies the scale.
            q_block = scaled_into(q.new_empty(batch, heads, rows, head_dim), q[:, :, block.start : block.stop], scale)
            q_block = q_block.view(batch * heads, rows, head_dim)  # (N, rows, Dh)
            k_block, v_block = key_prefix(k3, block.keys), key_prefix(v3, block.keys)  # (N, S', Dh) each
            scores = torch.bmm(q_block, k_block.transpose(1, 2))  # (N, rows, S')
            if block.bias is not None:  # bias broadcasts over (B, H, rows, S' - bias_from)
                scores.view(batch, heads, rows, block.keys)[..., block.bias_from :].add_(block.bias)
            p = torch.softmax(scores, dim=-1)  # (N, rows, S'), fp32 accumulation inside the kernel
            if reachable is not None:  # unconditional (no data-dependent branch, so torch.compile keeps one graph)
                p.view(batch, heads, rows, block.keys).masked_fill_(~reachable, 0.0)
            block_out = torch.bmm(p, v_block).view(batch, heads, rows, head_dim)
            out[:, block.start : block.stop] = block_out.transpose(1, 2)  # (B, rows, H, Dh)
            q_blocks.append(q_block)
            probs.append(p)
        ctx.save_for_backward(k3, v3, *q_blocks, *probs)
        ctx.blocks = [(b.start, b.stop, b.keys) for b in blocks]  # type: ignore[attr-defined]
        ctx.scale = scale  # type: ignore[attr-defined]
        return out.transpose(1, 2)  # (B, H, T, Dh)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        # In the saved tensors' dtype, as in eager backward (outside autocast): a compiled graph would otherwise
        # trace it under the forward's autocast, which recasts some GEMMs (and then mismatches dtypes in others).
        with torch.autocast("cpu", enabled=False):
            return ExplicitAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        k3, v3, *saved = ctx.saved_tensors
        q_blocks, probs = saved[: len(ctx.blocks)], saved[len(ctx.blocks) :]
        batch, heads, queries, head_dim = grad_out.shape
        keys = k3.shape[1]
        grad_q = grad_out.new_empty(batch, queries, heads, head_dim)  # (B, T, H, Dh) memory order, like the output
        # Last block first: it reaches every key (when T >= S), so its GEMMs write dK and dV whole (beta 0); the
        # blocks before it reach key prefixes and accumulate into them. Keys no block reaches get zero gradient.
        make = torch.empty_like if ctx.blocks[-1][2] == keys else torch.zeros_like
        grad_k, grad_v = make(k3), make(v3)
        per_block = list(zip(ctx.blocks, q_blocks, probs, strict=True))
        for i, ((start, stop, reach), q_block, p) in enumerate(reversed(per_block)):
            rows = stop - start
            g = grad_out[:, :, start:stop].reshape(batch * heads, rows, head_dim)  # (N, rows, Dh), contiguous
            beta = 0.0 if i == 0 else 1.0
            grad_v[:, :reach].baddbmm_(p.transpose(1, 2), g, beta=beta)  # (N, S', Dh)
            grad_probs = torch.bmm(g, key_prefix(v3, reach).transpose(1, 2))  # (N, rows, S')
            grad_scores = torch._softmax_backward_data(grad_probs, p, -1, p.dtype)  # (N, rows, S')
            grad_q_block = torch.bmm(grad_scores, key_prefix(k3, reach)).view(batch, heads, rows, head_dim)  # unscaled
            scaled_into(grad_q[:, start:stop], grad_q_block.transpose(1, 2), ctx.scale)  # (B, rows, H, Dh)
            grad_k[:, :reach].baddbmm_(grad_scores.transpose(1, 2), q_block, beta=beta)  # q_block carries the scale
        return (
            grad_q.transpose(1, 2) if ctx.needs_input_grad[0] else None,
            grad_k.view(batch, heads, keys, head_dim) if ctx.needs_input_grad[1] else None,
            grad_v.view(batch, heads, keys, head_dim) if ctx.needs_input_grad[2] else None,
            None,
            None,
        )
