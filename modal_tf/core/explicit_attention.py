"""Attention dispatch: ``F.scaled_dot_product_attention``, or explicit batched GEMMs for bf16/fp16 training on CPU.

Notation: B batch, H heads, T query tokens, S key tokens, Dh head dim, N = B * H.

On CPU, SDPA's fused (flash) kernel computes its reduced-precision backward far from the speed of the matrix
units: at B 16, H 4, T 256, Dh 64 in bf16 one forward + backward takes ~40 ms, while the same attention written
as three batched GEMMs and a softmax — which oneDNN runs on AMX/AVX-512-BF16 — takes ~12 ms. Under
``bf16-mixed`` that was a third of a small GPT's step. So training in bf16/fp16 on CPU goes through
``ExplicitAttention`` (an ``autograd.Function`` with a hand-written backward, so autograd does not keep the
intermediate scores twice); everything else — fp32, inference, dropout, any CUDA device, or score matrices
above ``MAX_SCORE_BYTES`` where the flash kernel's O(T) memory matters, or rows longer than ``MAX_KEYS`` keys
where the explicit path turned slower — calls SDPA unchanged.

Semantics match SDPA: ``mask`` is boolean (True = may attend) broadcastable to ``(B, H, T, S)``; ``is_causal``
masks keys after each query (top-left aligned, as SDPA); the scale is ``Dh ** -0.5``; a query with no key it
may attend to gets a zero output (and zero gradients), as SDPA's CPU kernels return.

Precision trade-off: scores ``Q Kᵀ`` are rounded to the input precision before the softmax (which accumulates in
fp32 inside the kernel), as unfused attention under autocast does; SDPA's fused kernel keeps scores in fp32. The
error against fp64 is close to SDPA's for spread-out attention and up to ~2x SDPA's for sharply peaked attention
(score std ~9) — still bf16-level (~1e-2 relative), which bf16 mixed-precision training tolerates by design
(Micikevicius et al. 2018, https://arxiv.org/abs/1710.03740). fp32 scores would make ``Q Kᵀ`` an fp32 GEMM and
cost most of the speed-up. Tests bound the error for both regimes.

Memory: the explicit path keeps each layer's probabilities ``(N, T, S)`` for backward (SDPA keeps O(T) row
statistics); ``MAX_SCORE_BYTES`` caps that per call, so a deep model holds up to depth x that.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

LOW_PRECISION = (torch.bfloat16, torch.float16)
# The explicit path keeps the (N, T, S) probabilities for backward; above this size per call, SDPA's flash kernel
# (which keeps O(T) statistics instead) is used, so long sequences keep SDPA's memory footprint.
MAX_SCORE_BYTES = 64 * 2**20
# Measured fwd+bwd, bf16, one thread (B x H x T: explicit vs SDPA): 3.8x faster at T 128, 1.5x at 256, 1.1x at 384
# and 512, but 2x *slower* at 1024 and 2.6x slower at 2048 (softmax over long rows outgrows the caches), so long
# rows keep SDPA.
MAX_KEYS = 512


def uses_explicit(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> bool:
    """Whether ``attention`` takes the explicit path for these ``(B, H, T, Dh)`` / ``(B, H, S, Dh)`` inputs."""
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    batch, heads, queries, _ = q.shape
    score_bytes = batch * heads * queries * k.shape[2] * q.element_size()
    return (
        training
        and dropout_p == 0.0
        and q.device.type == "cpu"
        and q.dtype in LOW_PRECISION
        and k.dtype == q.dtype == v.dtype
        and score_bytes <= MAX_SCORE_BYTES
        and k.shape[2] <= MAX_KEYS
    )


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False
) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)``, faster for CPU bf16/fp16 training.

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
    if not uses_explicit(q, k, v, dropout_p):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    return explicit_attention(q, k, v, mask, is_causal)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
    """The explicit path at any dtype and device (``attention`` picks it; tests compare it with SDPA in fp64)."""
    reachable = None
    if is_causal:  # top-left causal: every query reaches key 0, so no row is ever fully masked
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()  # (T, S)
    elif mask is not None:
        reachable = mask.any(-1, keepdim=True)  # (B|1, H|1, T, 1): False where a query may attend to nothing
    bias = None
    if mask is not None:
        # The dtype's most negative finite value, not -inf, so a fully masked row never sums -inf + -inf; such rows
        # (fp16 may still overflow them to -inf and NaN) are zeroed after the softmax, as SDPA's CPU kernels return.
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, torch.finfo(q.dtype).min)
    return ExplicitAttention.apply(q, k, v, bias, reachable)  # type: ignore[no-any-return]


class ExplicitAttention(torch.autograd.Function):
    """softmax(Q Kᵀ / sqrt(Dh) + bias) V as batched GEMMs, with the textbook backward.

    With ``P = softmax(S)``, ``O = P V``: ``dV = Pᵀ dO``, ``dP = dO Vᵀ``, ``dS = P ⊙ (dP - rowsum(dP ⊙ P))``,
    ``dQ = dS K / sqrt(Dh)``, ``dK = dSᵀ Q / sqrt(Dh)``.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, reachable: Tensor | None
    ) -> Tensor:
        batch, heads, queries, head_dim = q.shape
        keys = k.shape[2]
        scale = head_dim**-0.5
        q3 = q.reshape(batch * heads, queries, head_dim)  # (N, T, Dh)
        k3 = k.reshape(batch * heads, keys, head_dim)  # (N, S, Dh)
        v3 = v.reshape(batch * heads, keys, head_dim)  # (N, S, Dh)
        scores = torch.bmm(q3, k3.transpose(1, 2)).mul_(scale)  # (N, T, S)
        if bias is not None:
            scores.view(batch, heads, queries, keys).add_(bias)  # bias broadcasts over (B, H, T, S)
        probs = torch.softmax(scores, dim=-1)  # (N, T, S), fp32 accumulation inside the kernel
        if reachable is not None:  # unconditional (no data-dependent branch, so torch.compile keeps one graph)
            probs.view(batch, heads, queries, keys).masked_fill_(~reachable, 0.0)
        out = torch.bmm(probs, v3)  # (N, T, Dh)
        ctx.save_for_backward(q3, k3, v3, probs)
        ctx.scale = scale  # type: ignore[attr-defined]
        return out.view(batch, heads, queries, head_dim)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q3, k3, v3, probs = ctx.saved_tensors
        batch, heads, queries, head_dim = grad_out.shape
        keys = k3.shape[1]
        grad3 = grad_out.reshape(batch * heads, queries, head_dim)  # (N, T, Dh)
        grad_v = torch.bmm(probs.transpose(1, 2), grad3) if ctx.needs_input_grad[2] else None  # (N, S, Dh)
        grad_probs = torch.bmm(grad3, v3.transpose(1, 2))  # (N, T, S)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype).mul_(ctx.scale)  # (N, T, S)
        grad_q = torch.bmm(grad_scores, k3) if ctx.needs_input_grad[0] else None  # (N, T, Dh)
        grad_k = torch.bmm(grad_scores.transpose(1, 2), q3) if ctx.needs_input_grad[1] else None  # (N, S, Dh)
        return (
            None if grad_q is None else grad_q.view(batch, heads, queries, head_dim),
            None if grad_k is None else grad_k.view(batch, heads, keys, head_dim),
            None if grad_v is None else grad_v.view(batch, heads, keys, head_dim),
            None,
            None,
        )
