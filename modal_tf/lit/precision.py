"""What a run's bf16/fp16 precision costs on a CPU without fast kernels for it, said once, before training.

``--trainer.precision=bf16-mixed`` trained faster than fp32 on the Intel Xeon with AMX of ``README``'s performance
table. On a CPU without fast bf16 kernels — AVX2 only, as the AMD EPYC (Zen 3) it was measured on — torch runs
every bf16 matrix product on a loop kernel (``modal_tf.core.cpu_support``): a small decoder's training step
measured ~20x slower than fp32 there (``benchmarks/precision.py``). modal_tf's own layers emulate bf16 on fp32
kernels there (``modal_tf.core.emulation``), which keeps bf16's rounding at about fp32's speed, but layers from
elsewhere (a timm backbone, a plain ``nn.Linear``) still crawl. Nothing fails either way, so the run says which
of the two it is and that ``32-true`` is the fast setting.
"""

from __future__ import annotations

import torch
from torch import nn

from modal_tf.core.cpu_support import fast_cpu_matmul
from modal_tf.core.emulation import EmulatesReducedPrecision

# Lightning precision settings ("bf16-mixed", "bf16-true", "16-mixed", "16-true", ...) by their matmul dtype
_PREFIXES = (("bf16", torch.bfloat16), ("16", torch.float16))
# Modules whose forward is a matrix product or convolution (attention modules hold nn.Linear projections)
_MATMUL_LAYERS = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.MultiheadAttention,
    nn.RNNBase,
)
_LISTED = 3  # foreign layers named in the warning; the rest are counted


def precision_dtype(precision: str) -> torch.dtype | None:
    """The reduced dtype a Lightning ``precision`` computes in (``"bf16-mixed"`` -> bf16), or None (32, 64, ...)."""
    for prefix, dtype in _PREFIXES:
        if precision == prefix or precision.startswith(f"{prefix}-"):
            return dtype
    return None


def unemulated_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s matrix-product layers that do not emulate reduced precision (not from modal_tf)."""
    return [
        name or type(module).__name__
        for name, module in model.named_modules()
        if isinstance(module, _MATMUL_LAYERS) and not isinstance(module, EmulatesReducedPrecision)
    ]


def slow_precision_warning(precision: str, device: torch.device, model: nn.Module) -> str | None:
    """The warning for training ``model`` at ``precision`` on ``device``, or None when that runs on fast kernels."""
    dtype = precision_dtype(precision)
    if device.type != "cpu" or dtype is None or fast_cpu_matmul(dtype):
        return None
    name = str(dtype).removeprefix("torch.")
    cause = (
        f"trainer.precision={precision!r} on a CPU where torch has no fast {name} matrix kernels (the CPU lacks the "
        "instructions, e.g. AVX2 only, or torch.backends.mkldnn is disabled)"
    )
    foreign = unemulated_layers(model)
    if not foreign:
        return (
            f"{cause}: modal_tf's layers compute {name} products on fp32 kernels here (modal_tf.core.emulation), so "
            f"this run keeps {name}'s rounding (and the linear layers' activation memory) but not its speed (a small "
            "decoder's step measured ~0.9x fp32's speed, benchmarks/precision.py). --trainer.precision=32-true is "
            "faster here."
        )
    listed = ", ".join(repr(layer) for layer in foreign[:_LISTED])
    more = f" and {len(foreign) - _LISTED} more" if len(foreign) > _LISTED else ""
    return (
        f"{cause}: {len(foreign)} layers of this model are not modal_tf's ({listed}{more}) and run {name} products "
        f"on torch's loop kernel, so this run goes many times slower than in fp32 (a whole {name} training step "
        "measured ~20x slower, benchmarks/precision.py). Use --trainer.precision=32-true on this machine."
    )
