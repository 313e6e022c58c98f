"""bf16/fp16 emulated on fp32 kernels where the CPU has none (``modal_tf.core.emulation``): torch's numbers, on
fp32 kernels only, and only where it applies. Every test pins the CPU kind, so they test the same on any machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers import pin_reduced_precision_kernels, text_batch
from torch import Tensor
from torch._dynamo.backends.common import aot_autograd
from torch.utils._python_dispatch import TorchDispatchMode

from modal_tf.core import Conv1d, Conv2d, Linear, Transformer, TransformerConfig, emulation, native_reduced_precision
from modal_tf.core.explicit_attention import attention
from modal_tf.models import DecoderOnly, next_token_loss, shift_target
from modal_tf.tokenizers import ByteTokenizer

REDUCED = [torch.bfloat16, torch.float16]
# aten's matrix products and convolutions, as the dispatcher names them (forward and backward)
PRODUCTS = ("mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot")
PRODUCTS += ("convolution", "convolution_backward")


class ProductDtypes(TorchDispatchMode):
    """Records the input dtype of every matrix product or convolution torch runs (autograd's backward too)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if name in PRODUCTS or "scaled_dot_product" in name:
            self.seen.append((name, next(a.dtype for a in args if isinstance(a, Tensor))))
        return func(*args, **(kwargs or {}))

    @property
    def dtypes(self) -> set[torch.dtype]:
        return {dtype for _, dtype in self.seen}


def outputs_and_grads(layer: torch.nn.Module, x: Tensor, dtype: torch.dtype, mode: str) -> list[Tensor]:
    """``layer(x)`` under ``mode`` ("autocast": fp32 layer, CPU autocast; "true": layer and input in ``dtype``),
    then the gradients of a fixed weighted sum of it for the input and every parameter."""
    layer.zero_grad(set_to_none=True)
    x = (x.to(dtype) if mode == "true" else x).detach().requires_grad_()
    with torch.autocast("cpu", dtype=dtype, enabled=mode == "autocast"):
        out = layer(x)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out.float() * weights).sum().backward()
    return [out, x.grad, *(p.grad for p in layer.parameters())]  # type: ignore[list-item]


@pytest.fixture
def count_emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of ``EmulatedLinear`` calls, grown as they happen."""
    calls: list[int] = []
    apply = emulation.EmulatedLinear.apply
    monkeypatch.setattr(emulation.EmulatedLinear, "apply", lambda *args: calls.append(1) or apply(*args))
    yield calls


@pytest.mark.parametrize("mode", ["autocast", "true"])
@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (lambda dtype: Linear(24, 40), (3, 5, 24)),
        (lambda dtype: Conv1d(6, 8, 3, padding=1), (2, 6, 9)),
        (lambda dtype: Conv2d(3, 5, 3, stride=2), (2, 3, 9, 9)),
    ],
    ids=["linear", "conv1d", "conv2d"],
)
@pytest.mark.usefixtures("slow_reduced_precision")
def test_emulation_gives_torchs_reduced_precision_results(
    build: Callable[[torch.dtype], torch.nn.Module], shape: tuple[int, ...], dtype: torch.dtype, mode: str
) -> None:
    layer = build(dtype)
    if mode == "true":
        layer = layer.to(dtype)
    x = torch.randn(*shape)
    with ProductDtypes() as emulated_run:
        emulated = outputs_and_grads(layer, x, dtype, mode)
    with native_reduced_precision(), ProductDtypes() as native_run:
        native = outputs_and_grads(layer, x, dtype, mode)
    assert emulated_run.dtypes == {torch.float32} and native_run.dtypes == {dtype}, "emulated: fp32 products only"
    assert emulated[0].dtype == dtype, "outputs stay in the reduced dtype"
    eps = torch.finfo(dtype).eps
    for name, e, n in zip(("out", "input grad", "weight grad", "bias grad"), emulated, native, strict=True):
        assert e.dtype == n.dtype, name  # the same dtypes as torch's (fp32 parameter grads under autocast)
        # the same numbers up to the order of fp32 sums: one rounding step of the reduced dtype, at the scale of
        # the tensor's largest entries (sums that nearly cancel keep the absolute error of their terms)
        torch.testing.assert_close(e, n, rtol=eps, atol=eps * n.abs().max().item(), msg=name)


@pytest.mark.usefixtures("slow_reduced_precision")
def test_emulation_only_where_the_product_would_be_reduced_on_a_slow_cpu(
    monkeypatch: pytest.MonkeyPatch, count_emulated: list[int]
) -> None:
    layer, x = Linear(8, 4), torch.randn(2, 8)

    def emulates(x: Tensor, autocast: bool = True, layer: torch.nn.Module = layer) -> bool:
        count_emulated.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            layer(x)
        return len(count_emulated) == 1

    assert emulates(x), "fp32 input under bf16 autocast"
    assert emulates(x.bfloat16(), autocast=False, layer=Linear(8, 4).bfloat16()), "bf16-true"
    assert not emulates(x, autocast=False), "plain fp32"
    assert not emulates(x.double(), layer=Linear(8, 4).double()), "autocast leaves fp64 alone"
    assert not emulates(torch.randn(2, 8, device="meta"), layer=Linear(8, 4, device="meta")), "not a CPU tensor"
    with native_reduced_precision():
        assert not emulates(x)
    assert emulates(x), "native_reduced_precision() ends with its block"
    pin_reduced_precision_kernels(monkeypatch, fast=True)
    assert not emulates(x), "a CPU with bf16 kernels runs them"


@pytest.mark.usefixtures("slow_reduced_precision")
def test_linear_saves_its_reduced_operands_not_fp32_copies() -> None:
    """bf16's activation memory is kept: backward gets the bf16 input and weight, not fp32 copies of them."""
    saved: list[torch.dtype] = []
    layer, x = Linear(16, 32), torch.randn(4, 16, requires_grad=True)
    hooks = torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t)
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert saved == [torch.bfloat16, torch.bfloat16]


@pytest.mark.usefixtures("slow_reduced_precision")
def test_calls_without_autograd_reuse_the_rounded_weight_until_it_changes() -> None:
    layer, x = Linear(8, 4), torch.randn(3, 8)

    def call(grad: bool) -> Tensor:
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(x)

    first = call(False)
    held = layer._rounded
    assert held is not None and call(False) is not first and layer._rounded is held, "rounded once"
    assert torch.equal(first, call(True)), "the same numbers as the autograd path"
    with torch.no_grad():
        layer.bias.add_(1.0)  # an optimizer-style in-place write of the bias alone
    assert torch.equal(call(False), call(True)) and not torch.equal(call(False), first)
    layer.load_state_dict({"weight": torch.zeros(4, 8), "bias": torch.zeros(4)})
    assert torch.equal(call(False), torch.zeros(3, 4, dtype=torch.bfloat16))
    layer.bias = torch.nn.Parameter(torch.ones(4))  # a replaced parameter, whatever its address and version
    assert torch.equal(call(False), torch.ones(3, 4, dtype=torch.bfloat16))
    layer.double().float()  # conversions swap storage in place
    assert layer._rounded is None and torch.equal(call(False), call(True))
    with torch.inference_mode():
        call(False)  # a rounded weight made in inference mode, then training: never saved for backward
    call(True).float().sum().backward()


@pytest.mark.usefixtures("slow_reduced_precision")
def test_mismatched_dtypes_still_get_torchs_error() -> None:
    with pytest.raises(RuntimeError, match="dtype"):  # bf16 input, fp32 weight, no autocast: as nn.Linear
        Linear(8, 4)(torch.randn(2, 8).bfloat16())


@pytest.mark.usefixtures("slow_reduced_precision")
def test_emulated_linear_supports_double_backward_and_torch_func() -> None:
    layer, x = Linear(6, 3).bfloat16(), torch.randn(4, 6).bfloat16().requires_grad_()

    def loss(x: Tensor) -> Tensor:
        return layer(x).float().square().sum()

    (grad,) = torch.autograd.grad(loss(x), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.float().sum(), x)
    with native_reduced_precision():
        (native_grad,) = torch.autograd.grad(loss(x), x, create_graph=True)
        (native_second,) = torch.autograd.grad(native_grad.float().sum(), x)
    torch.testing.assert_close(second, native_second)
    torch.testing.assert_close(torch.func.grad(loss)(x), grad.detach())
    per_row = torch.func.vmap(torch.func.grad(lambda row: loss(row[None])))(x)  # (4, 6)
    torch.testing.assert_close(per_row, grad.detach())


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.usefixtures("slow_reduced_precision")
def test_emulated_attention_is_at_least_as_accurate_as_torchs_kernel(causal: bool) -> None:
    torch.manual_seed(0)
    exact = [torch.randn(2, 3, 40, 16, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    low = [t.detach().bfloat16().requires_grad_() for t in exact]
    weights = torch.linspace(-1, 1, 2 * 3 * 40 * 16, dtype=torch.float64).view(2, 3, 40, 16)

    def run(fn: Callable[..., Tensor], tensors: list[Tensor]) -> list[Tensor]:
        for t in tensors:
            t.grad = None
        out = fn(*tensors, is_causal=causal)
        (out.double() * weights).sum().backward()
        return [out.double(), *(t.grad.double() for t in tensors)]  # type: ignore[union-attr]

    reference = run(F.scaled_dot_product_attention, exact)
    with ProductDtypes() as emulated_run:
        ours = run(attention, low)
    with native_reduced_precision(), ProductDtypes() as native_run:
        native = run(attention, low)
    assert emulated_run.dtypes == {torch.float32} and native_run.dtypes == {torch.bfloat16}
    assert attention(*low, is_causal=causal).dtype == torch.bfloat16
    for name, o, n, r in zip(("out", "dq", "dk", "dv"), ours, native, reference, strict=True):
        our_error, native_error = ((o - r).norm() / r.norm()).item(), ((n - r).norm() / r.norm()).item()
        assert our_error <= 1.1 * native_error + 1e-4, f"{name}: emulated {our_error:.3g}, torch {native_error:.3g}"


def decoder_step(model: DecoderOnly, texts: list[str]) -> Tensor:
    """One teacher-forced loss and backward under bf16 autocast; returns the loss."""
    decoder_input, labels = shift_target(text_batch(texts))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = next_token_loss(model({}, decoder_input), labels)
    loss.backward()
    return loss.detach()


@pytest.mark.usefixtures("slow_reduced_precision")
def test_a_bf16_training_step_runs_every_product_in_fp32_and_matches_torchs_loss() -> None:
    """Forward and backward of a whole decoder (embedding, attention, MLP, head): no product reaches torch's slow
    bf16 kernels, and the loss is torch's own bf16 loss within bf16 rounding."""
    torch.manual_seed(0)
    model = DecoderOnly(TransformerConfig(dim=32, depth=2, num_heads=4, position="rope"), ByteTokenizer())
    texts = ["attention is all you need", "one core, many modalities"]
    with ProductDtypes() as emulated_run:
        emulated_loss = decoder_step(model, texts)
    with native_reduced_precision(), ProductDtypes() as native_run:
        native_loss = decoder_step(model, texts)
    assert torch.bfloat16 in native_run.dtypes, "the recorder sees torch's bf16 products"
    assert emulated_run.dtypes == {torch.float32}, emulated_run.seen
    torch.testing.assert_close(emulated_loss, native_loss, rtol=1e-2, atol=1e-2)


@pytest.mark.usefixtures("slow_reduced_precision")
def test_the_emulating_core_compiles_to_one_graph() -> None:
    """``torch.compile(fullgraph=True)`` traces the emulated layers and attention, forward and backward, and the
    compiled graphs (AOT autograd's forward and backward) still multiply in fp32 only."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, depth=1, num_heads=4, position="rope"), num_axes=1)
    x = torch.randn(2, 20, 32)
    coords = torch.arange(20).expand(2, -1)[..., None]  # (B, T, 1)

    def loss_and_grads(forward: Callable[..., Tensor]) -> list[Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = forward(x, coords=coords, causal=True).float().square().mean()
        loss.backward()
        return [loss.detach(), *(p.grad.clone() for p in model.parameters())]  # type: ignore[union-attr]

    graphs: list[torch.fx.GraphModule] = []  # AOT autograd's forward and backward graphs, kept as compiled

    def keep(graph: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        graphs.append(graph)
        return graph.forward

    eager = loss_and_grads(model)
    compiled = loss_and_grads(torch.compile(model, fullgraph=True, backend=aot_autograd(fw_compiler=keep)))
    products = [
        (node.target.overloadpacket.__name__, node.args[0].meta["val"].dtype)  # type: ignore[union-attr]
        for graph in graphs
        for node in graph.graph.nodes
        if node.op == "call_function"
        and isinstance(node.target, torch._ops.OpOverload)
        and (node.target.overloadpacket.__name__ in PRODUCTS or "scaled_dot_product" in str(node.target))
    ]
    assert len(graphs) == 2, "one forward and one backward graph"
    assert products and {dtype for _, dtype in products} == {torch.float32}, products
    for c, e in zip(compiled, eager, strict=True):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)
