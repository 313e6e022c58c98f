"""Which floating-point matrix products this CPU runs on fast kernels.

torch multiplies fp32/fp64 matrices with BLAS (MKL or OpenBLAS) on every x86 and Arm CPU. bf16 and fp16 products
take oneDNN's kernels only where the CPU has the instructions for them: bf16 with AVX-512 (converted, or natively
with AVX-512-BF16 / AMX) or Arm's BF16 extension, fp16 with AVX-512-FP16 / AMX-FP16 or Arm's FP16 arithmetic.
Anywhere else — an AVX2-only CPU such as AMD EPYC (Zen 3) — torch falls back to a plain loop kernel. Measured on
such a CPU (one thread, ``benchmarks/precision.py``, ``benchmarks/core.py``'s decoder: B 16, T 256, d 256): the qkv
projection's products in bf16 at 0.02-0.22x fp32's GFLOP/s (by layout: its input gradient, plain ``(4096, 768) @
(768, 256)``, at 1.0 GFLOP/s against 60), and a whole bf16-mixed training step ~20x slower than fp32 (48.5 s
against 2.36 s).

``fast_cpu_matmul`` asks torch the question its own dispatch asks (``torch.ops.mkldnn._is_mkldnn_bf16_supported``,
as ``torch._inductor`` does), so the two cannot disagree; the attention dispatch, the emulation of bf16/fp16 on
fp32 kernels (``emulation``) and the training layer's precision warning read it.
"""

from __future__ import annotations

import functools

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)  # the reduced float dtypes torch multiplies on oneDNN's CPU kernels
# torch's own probes of oneDNN's reduced-precision CPU kernels (private ops; absent without oneDNN).
_ONEDNN_PROBES = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}


@torch.compiler.assume_constant_result  # traced code takes the answer as a constant, without a graph break
def fast_cpu_matmul(dtype: torch.dtype) -> bool:
    """Whether torch multiplies ``dtype`` matrices on this CPU with vectorised kernels (not a scalar fallback).

    True for fp32 and fp64 (BLAS); for bf16 and fp16, whether oneDNN has kernels for this CPU and is enabled
    (``torch.backends.mkldnn.enabled``, which torch's matmul dispatch also honours; ``torch.compile`` reads the
    switch when it traces); False for any other dtype.
    """
    if dtype in (torch.float32, torch.float64):
        return True
    if dtype not in _ONEDNN_PROBES or not torch.backends.mkldnn.enabled:
        return False
    return _onednn_supports(dtype)


@functools.cache
def _onednn_supports(dtype: torch.dtype) -> bool:
    """The CPU's answer for ``dtype`` (fixed for the process, so asked once)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(getattr(torch.ops.mkldnn, _ONEDNN_PROBES[dtype])())
    except (AttributeError, RuntimeError):  # a torch build without the probe: assume the slow fallback
        return False
