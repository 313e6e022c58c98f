"""bf16/fp16 matrix products on fp32 kernels, for CPUs without fast reduced-precision kernels.

Notation: N rows (every leading dim of a linear layer's input, flattened), I input features, O output features.

On a CPU without bf16 instructions (AVX2 only, say an AMD EPYC Zen 3) torch multiplies bf16 matrices on a loop
kernel (``cpu_support``): a small decoder's ``bf16-mixed`` training step measured ~20x slower than fp32 there. Yet
a bf16 (or fp16) product is exactly representable work for fp32: the product of two bf16 numbers (8-bit
significands) fits fp32's 24 bits without rounding, and oneDNN's bf16 kernels accumulate in fp32 anyway. So an fp32
GEMM on the bf16-rounded operands, rounded to bf16 at the end, computes what a bf16 GEMM computes, up to the
order of the fp32 sums. The layers here do that on such CPUs and keep bf16's behaviour where it shows: operands and
outputs are rounded to the reduced dtype, weight and input gradients come back in it (then to the parameter's
dtype, as under autocast), and ``Linear`` saves its bf16 operands (not fp32 copies) for backward. The attention
dispatch (``explicit_attention.attention``) runs its fp32 paths on rounded inputs and rounds the output: scores
and probabilities stay fp32 inside, so it is a little *more* precise than torch's bf16 kernels (tested), and it
keeps fp32 tensors for backward (2-3.4x the bytes SDPA's bf16 kernel keeps, at B 2, H 4, T 64, Dh 16), as the
convolutions do.

Where it applies (``emulated_dtype``): CPU tensors computed in bf16 or fp16 — under ``torch.autocast("cpu")`` or
as the tensor's own dtype (``bf16-true``) — where ``fast_cpu_matmul`` says no. On a CPU with the kernels, on any GPU,
and in fp32 the layers are ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` exactly. ``native_reduced_precision()``
switches emulation off, to measure torch's own kernels (``benchmarks/precision.py``).

Speed (one thread, AMD EPYC AVX2, ``benchmarks/precision.py``): a decoder's bf16-mixed training step ran at 0.93x
fp32's speed emulated, 0.055x on torch's kernels; cached generation at 0.84x fp32's tokens/s (batch 1; torch's
kernels 0.98x, as one row is memory-bound) and 0.88x (batch 8; torch's 0.40x). With autograd each call rounds the
weight afresh (noise in a training step); without, ``Linear`` keeps it (decoding). Emulation buys bf16's
numerics (a recipe meant for a bf16 GPU behaves the same on a laptop), not its speed: ``32-true`` stays the fast
setting on such CPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modal_tf.core.cpu_support import LOW_PRECISION, fast_cpu_matmul

_AUTOCAST_ELIGIBLE = (torch.float32, *LOW_PRECISION)  # the dtypes CPU autocast recasts (not fp64, not integers)
# Flipped only by native_reduced_precision; process-wide, like torch.backends' switches (compiled code guards on it)
_state = {"emulate": True}


def emulated_dtype(x: Tensor, weight: Tensor | None = None) -> torch.dtype | None:
    """The reduced dtype that a matrix product of ``x`` (and ``weight``) would compute in on a slow kernel here.

    That dtype is the CPU autocast dtype when autocast is on (and ``x`` is a dtype it recasts), else ``x.dtype``
    (then only when ``weight`` has it too: a mismatch is left to torch's own error); it is emulated when it is bf16
    or fp16, ``x`` is on the CPU and ``fast_cpu_matmul`` says the CPU lacks kernels. None: no emulation.
    """
    if x.device.type != "cpu" or not _state["emulate"]:
        return None
    dtype = x.dtype
    if torch.is_autocast_enabled("cpu") and dtype in _AUTOCAST_ELIGIBLE:
        dtype = torch.get_autocast_dtype("cpu")
    elif weight is not None and weight.dtype != dtype:
        return None
    return dtype if dtype in LOW_PRECISION and not fast_cpu_matmul(dtype) else None


@contextlib.contextmanager
def native_reduced_precision() -> Iterator[None]:
    """Within this context, bf16/fp16 products run on torch's own kernels, even where those are slow."""
    previous = _state["emulate"]
    _state["emulate"] = False
    try:
        yield
    finally:
        _state["emulate"] = previous


def rounded(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` rounded to ``dtype`` and held in fp32 (exact: fp32 represents every bf16 and fp16 value)."""
    return x.to(dtype).float()


class EmulatedLinear(torch.autograd.Function):
    """``F.linear`` of reduced-precision operands on fp32 GEMMs; saves the reduced operands, not fp32 copies.

    New-style (``setup_context``), so ``torch.func`` transforms work through it; its backward is made of
    differentiable ops, so double backward works too.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``(..., I)`` x ``(O, I)`` (+ ``(O,)``) -> ``(..., O)``, all in the same reduced dtype."""
        with torch.autocast("cpu", enabled=False):  # else autocast would send the fp32 GEMM back to bf16
            out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        return out.to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor | None], output: Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        """The input, weight and bias gradients, each on fp32 GEMMs and rounded to its operand's dtype."""
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        with torch.autocast("cpu", enabled=False):
            grad = grad_out.float()  # (..., O)
            if ctx.needs_input_grad[0]:
                grad_x = (grad @ weight.float()).to(x.dtype)  # (..., I)
            rows = grad.reshape(-1, grad.shape[-1])  # (N, O)
            if ctx.needs_input_grad[1]:
                grad_weight = (rows.T @ x.reshape(-1, x.shape[-1]).float()).to(weight.dtype)  # (O, I)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = rows.sum(0).to(weight.dtype)  # (O,)
        return grad_x, grad_weight, grad_bias


class _Rounded(NamedTuple):
    """A ``Linear``'s parameters rounded to a reduced dtype (in fp32), and what they were rounded from."""

    sources: tuple[Tensor, Tensor | None]  # the parameters themselves: identity, so a replaced one is never mistaken
    stamp: tuple[object, ...]  # dtype, then each parameter's version counter and storage address
    weight: Tensor
    bias: Tensor | None


class EmulatesReducedPrecision:
    """Marker of the layers that emulate bf16/fp16 products where the CPU is slow (``Linear``, ``Conv1d``, ...)."""


class Linear(nn.Linear, EmulatesReducedPrecision):
    """``nn.Linear`` that computes bf16/fp16 on fp32 kernels where the CPU has none for them (module docstring).

    Same parameters, state dict and results as ``nn.Linear`` (up to the order of fp32 sums where it emulates).
    Without autograd (``torch.no_grad``, ``torch.inference_mode``: generation, evaluation) an emulating call keeps
    its rounded fp32 weight until the weight changes, so decoding one token at a time does not round every weight
    at every step: that costs an fp32 copy of the weight per layer, held from the first such call. Writes through
    ``weight.data`` bypass the version counter (as they bypass autograd's checks) and are not seen; ``torch.no_grad``
    in-place updates (optimizers, ``load_state_dict``, EMA through ``detach()``) are.
    """

    _rounded: _Rounded | None = None  # the rounded parameters, for calls without autograd

    def forward(self, x: Tensor) -> Tensor:
        """``(..., I)`` -> ``(..., O)``."""
        dtype = emulated_dtype(x, self.weight)
        if dtype is None:
            return F.linear(x, self.weight, self.bias)
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            bias = None if self.bias is None else self.bias.to(dtype)
            return EmulatedLinear.apply(x.to(dtype), self.weight.to(dtype), bias)
        weight, rounded_bias = self._rounded_parameters(dtype)
        with torch.autocast("cpu", enabled=False):
            return F.linear(rounded(x, dtype), weight, rounded_bias).to(dtype)

    def _rounded_parameters(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """Weight and bias rounded to ``dtype``, held in fp32; recomputed when either is written (version counter),
        replaced (another tensor or storage), converted (``_apply``: ``.to``, ``.float``, ...) or the dtype differs."""
        sources = (self.weight, self.bias)
        stamp = (dtype, *((p._version, p.data_ptr()) for p in sources if p is not None))
        held = self._rounded
        if held is None or held.stamp != stamp or any(a is not b for a, b in zip(held.sources, sources, strict=True)):
            bias = None if self.bias is None else rounded(self.bias, dtype)
            held = self._rounded = _Rounded(sources, stamp, rounded(self.weight, dtype), bias)
        return held.weight, held.bias

    def _apply(self, fn: Any, recurse: bool = True) -> Linear:
        self._rounded = None  # conversions may swap parameter storage in place (``param.data = ...``)
        return super()._apply(fn, recurse)


class _EmulatedConv(EmulatesReducedPrecision):
    """Convolution on fp32 kernels over reduced-precision-rounded operands, where the CPU is slow.

    Stems run one or two convolutions, so autograd's own backward (which keeps the fp32 copies) is good enough
    here; ``Linear``, the hot path, keeps the reduced operands instead.
    """

    weight: Tensor
    bias: Tensor | None
    if TYPE_CHECKING:  # supplied by the nn.Conv class mixed in after this one (a stub here would shadow it)

        def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor: ...

    def forward(self, x: Tensor) -> Tensor:
        """The convolution of ``x``, as the ``nn.Conv`` class it is mixed into computes it."""
        dtype = emulated_dtype(x, self.weight)
        if dtype is None:
            return self._conv_forward(x, self.weight, self.bias)
        bias = None if self.bias is None else rounded(self.bias, dtype)
        with torch.autocast("cpu", enabled=False):
            return self._conv_forward(rounded(x, dtype), rounded(self.weight, dtype), bias).to(dtype)


class Conv1d(_EmulatedConv, nn.Conv1d):
    """``nn.Conv1d`` that computes bf16/fp16 on fp32 kernels where the CPU has none for them."""


class Conv2d(_EmulatedConv, nn.Conv2d):
    """``nn.Conv2d`` that computes bf16/fp16 on fp32 kernels where the CPU has none for them."""
