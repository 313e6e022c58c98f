"""A loud warning when a run asks for bf16/fp16 on a CPU that has no fast kernels for it.

``--trainer.precision=bf16-mixed`` trained faster than fp32 on the Intel Xeon with AMX of ``README``'s performance
table, but on a CPU without fast bf16 kernels — AVX2 only, as the AMD EPYC (Zen 3) it was measured on — torch runs
every bf16 matrix product on a loop kernel (``modal_tf.core.cpu_support``): a small decoder's training step
measured ~20x slower than fp32 there (``benchmarks/precision.py``). Nothing fails, so without a warning a run would
just crawl.
"""

from __future__ import annotations

import torch

from modal_tf.core.cpu_support import fast_cpu_matmul

# Lightning precision settings ("bf16-mixed", "bf16-true", "16-mixed", "16-true", ...) by their matmul dtype
_PREFIXES = (("bf16", torch.bfloat16), ("16", torch.float16))


def precision_dtype(precision: str) -> torch.dtype | None:
    """The reduced dtype a Lightning ``precision`` computes in (``"bf16-mixed"`` -> bf16), or None (32, 64, ...)."""
    for prefix, dtype in _PREFIXES:
        if precision == prefix or precision.startswith(f"{prefix}-"):
            return dtype
    return None


def slow_precision_warning(precision: str, device: torch.device) -> str | None:
    """The warning for training at ``precision`` on ``device``, or None when that runs on fast kernels."""
    dtype = precision_dtype(precision)
    if device.type != "cpu" or dtype is None or fast_cpu_matmul(dtype):
        return None
    name = str(dtype).removeprefix("torch.")
    return (
        f"trainer.precision={precision!r} on a CPU where torch has no fast {name} matrix kernels (the CPU lacks the "
        f"instructions, e.g. AVX2 only, or torch.backends.mkldnn is disabled): {name} matrix products run on a "
        "loop kernel here, so this run goes many times slower than in fp32 (a small decoder's training step "
        "measured ~20x slower, benchmarks/precision.py). Use --trainer.precision=32-true on this machine."
    )
