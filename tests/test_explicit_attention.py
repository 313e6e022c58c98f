"""The explicit CPU attention path (bf16/fp16, causal fp32): same values and gradients as SDPA, taken only where it
should be."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from modal_tf.core import Transformer, TransformerConfig
from modal_tf.core import explicit_attention as explicit
from modal_tf.core.explicit_attention import attention, explicit_attention, uses_explicit


def qkv(dtype: torch.dtype, queries: int = 6, keys: int = 6, grad: bool = True) -> list[torch.Tensor]:
    """Random ``(2, 3, T, 8)`` queries and ``(2, 3, S, 8)`` keys/values (seeded)."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 3, queries, 8), (2, 3, keys, 8), (2, 3, keys, 8)]
    return [torch.randn(s, generator=generator, dtype=torch.float64).to(dtype).requires_grad_(grad) for s in shapes]


def padding_mask(keys: int) -> torch.Tensor:
    """``(2, 1, 1, S)``: row 0 sees every key, row 1 only the first two."""
    mask = torch.ones(2, 1, 1, keys, dtype=torch.bool)
    mask[1, ..., 2:] = False
    return mask


def outputs_and_grads(fn, tensors: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """``fn(q, k, v, **kwargs)``, then the gradients of a fixed weighted sum of its output."""
    for t in tensors:
        t.grad = None
    out = fn(*tensors, **kwargs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    return [out.detach(), *(t.grad.detach() for t in tensors)]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("queries", "keys", "kwargs"),
    [
        (6, 6, {}),
        (6, 6, {"is_causal": True}),
        (6, 5, {"mask": padding_mask(5)}),  # cross-attention shape with padded memory
        (4, 4, {"mask": torch.ones(4, 4, dtype=torch.bool).tril()[None, None]}),
    ],
)
def test_explicit_path_equals_sdpa_in_float64(queries: int, keys: int, kwargs: dict) -> None:  # type: ignore[type-arg]
    tensors = qkv(torch.float64, queries, keys)
    ours = outputs_and_grads(explicit_attention, tensors, **kwargs)
    mask = kwargs.get("mask")
    sdpa_kwargs = {"attn_mask": mask} if mask is not None else {"is_causal": kwargs.get("is_causal", False)}
    reference = outputs_and_grads(F.scaled_dot_product_attention, tensors, **sdpa_kwargs)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{name} differs from SDPA")


@pytest.mark.parametrize(
    ("queries", "keys", "block_rows"),
    # T > S, T < S, one block; 130 x 130 in 64-row blocks: GEMMs large enough for MKL's batched path (key prefix views)
    [(7, 7, 2), (7, 7, 3), (8, 8, 4), (9, 5, 2), (5, 9, 2), (6, 6, 6), (6, 6, 100), (130, 130, 64)],
)
def test_causal_query_blocks_equal_sdpa_in_float64(queries: int, keys: int, block_rows: int) -> None:
    tensors = qkv(torch.float64, queries, keys)
    ours = outputs_and_grads(explicit_attention, tensors, is_causal=True, block_rows=block_rows)
    reference = outputs_and_grads(F.scaled_dot_product_attention, tensors, is_causal=True)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{name} differs from SDPA")


@pytest.mark.parametrize(("batch", "heads"), [(2, 3), (1, 3), (2, 1), (1, 1)])
def test_causal_blocks_on_views_of_a_packed_projection(batch: int, heads: int) -> None:
    """q, k, v as the model makes them: strided views of one (B, T, 3, H, Dh) projection (B or H of 1 included)."""
    generator = torch.Generator().manual_seed(1)
    packed = torch.randn(batch, 7, 3, heads, 4, generator=generator, dtype=torch.float64, requires_grad=True)

    def run(fn, **kwargs) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
        packed.grad = None
        q, k, v = (z.transpose(1, 2) for z in packed.unbind(2))  # each (B, H, T, Dh), not contiguous
        out = fn(q, k, v, is_causal=True, **kwargs)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return [out.detach(), packed.grad.detach()]  # type: ignore[union-attr]

    ours = run(explicit_attention, block_rows=3)
    reference = run(F.scaled_dot_product_attention)
    for name, a, b in zip(("out", "d_packed"), ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{name} differs from SDPA")


def test_causal_blocks_skip_the_scores_above_the_diagonal() -> None:
    blocks = explicit.causal_blocks(256, 256, 64, torch.float32, torch.device("cpu"))
    assert [(b.start, b.stop, b.keys, b.bias_from) for b in blocks] == [
        (0, 64, 64, 0), (64, 128, 128, 64), (128, 192, 192, 128), (192, 256, 256, 192)
    ]  # fmt: skip
    assert sum((b.stop - b.start) * b.keys for b in blocks) == 256 * 256 * 10 // 16
    with pytest.raises(ValueError, match="rows must be a positive"):
        explicit.causal_blocks(4, 4, 0, torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("queries", [1, 64, 256, 512, 513, 4096])
def test_causal_block_rows_follow_the_measured_table(queries: int) -> None:
    """fp32/fp64 64 rows; bf16 128 up to 512 queries and 256 beyond; fp16 as bf16 (attention_paths.py part 4)."""
    assert explicit.causal_block_rows(queries, torch.float32) == 64
    assert explicit.causal_block_rows(queries, torch.float64) == 64
    reduced = explicit.causal_block_rows(queries, torch.bfloat16)
    assert reduced == (128 if queries <= 512 else 256)
    assert explicit.causal_block_rows(queries, torch.float16) == reduced


@pytest.mark.parametrize(
    ("dtype", "copied"), [(torch.float32, False), (torch.float64, False), (torch.bfloat16, True), (torch.float16, True)]
)
def test_key_prefix_is_a_view_for_blas_dtypes_and_a_contiguous_copy_for_reduced_precision(
    dtype: torch.dtype, copied: bool
) -> None:
    keys = torch.arange(2 * 5 * 3, dtype=torch.float64).view(2, 5, 3).to(dtype)  # (N, S, Dh)
    prefix = explicit.key_prefix(keys, 2)
    assert torch.equal(prefix, keys[:, :2])
    assert prefix.is_contiguous() is copied
    assert (prefix.untyped_storage().data_ptr() == keys.untyped_storage().data_ptr()) is not copied
    assert explicit.key_prefix(keys, 5).data_ptr() == keys.data_ptr()  # every row: never copied


def test_fully_masked_query_gives_zero_output_and_gradients_like_sdpa() -> None:
    tensors = qkv(torch.float64, 3, 3)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])[None, None]
    ours = outputs_and_grads(explicit_attention, tensors, mask=mask)
    reference = outputs_and_grads(F.scaled_dot_product_attention, tensors, attn_mask=mask)
    assert torch.isfinite(ours[0]).all()
    assert ours[0][:, :, 1].abs().max() == 0
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sharpness", [1.0, 3.0])  # score std ~1 (spread out) and ~9 (sharply peaked)
@pytest.mark.usefixtures("fast_reduced_precision")
def test_bf16_training_takes_the_explicit_path_with_sdpa_like_error(sharpness: float) -> None:
    # 130 queries: two causal blocks of bf16's default rows (128, then 2), so dK/dV accumulate across blocks in bf16
    assert explicit.causal_block_rows(130, torch.bfloat16) < 130
    exact_inputs = [t.detach() * (sharpness if i < 2 else 1.0) for i, t in enumerate(qkv(torch.float64, 130, 130))]
    exact_inputs = [t.requires_grad_() for t in exact_inputs]
    low = [t.detach().to(torch.bfloat16).requires_grad_() for t in exact_inputs]
    assert uses_explicit(*low, dropout_p=0.0)
    exact = outputs_and_grads(F.scaled_dot_product_attention, exact_inputs, is_causal=True)
    ours = outputs_and_grads(attention, low, is_causal=True)
    sdpa = outputs_and_grads(F.scaled_dot_product_attention, low, is_causal=True)
    for name, a, b, e in zip(("out", "dq", "dk", "dv"), ours, sdpa, exact, strict=True):
        our_error = ((a.double() - e).norm() / e.norm()).item()
        sdpa_error = ((b.double() - e).norm() / e.norm()).item()
        # Documented trade-off: bf16 scores cost up to ~2x SDPA's error on peaked attention, never more than 3x.
        assert our_error <= 3 * sdpa_error + 1e-3, f"{name}: explicit error {our_error:.3g} vs SDPA {sdpa_error:.3g}"
        assert our_error < 0.05, f"{name}: relative error {our_error:.3g} is beyond bf16 level"


def test_fully_masked_rows_stay_finite_in_fp16() -> None:
    """fp16's most negative value plus a negative score overflows to -inf; the row must still come out zero."""
    tensors = [t.detach().mul(8).half().requires_grad_() for t in qkv(torch.float64, 3, 3)]
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])[None, None]
    out = explicit_attention(*tensors, mask=mask)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and out[:, :, 1].abs().max() == 0
    assert all(torch.isfinite(t.grad).all() for t in tensors)  # type: ignore[arg-type]


@pytest.mark.parametrize(("queries", "keys"), [(6, 6), (130, 130), (5, 9), (9, 5)])  # 130: three causal blocks
def test_fp32_causal_training_takes_the_explicit_path(monkeypatch: pytest.MonkeyPatch, queries: int, keys: int) -> None:
    calls: list[int] = []
    apply = explicit.ExplicitAttention.apply
    monkeypatch.setattr(explicit.ExplicitAttention, "apply", lambda *args: calls.append(1) or apply(*args))
    fp32 = qkv(torch.float32, queries, keys)
    exact = outputs_and_grads(F.scaled_dot_product_attention, qkv(torch.float64, queries, keys), is_causal=True)
    ours = outputs_and_grads(attention, fp32, is_causal=True)
    assert calls, "fp32 causal training did not take the explicit path"
    for a, e in zip(ours, exact, strict=True):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5)  # fp32 throughout: fp32-level agreement


@pytest.mark.usefixtures("fast_reduced_precision")
def test_fp32_explicit_limit_and_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    fp32 = qkv(torch.float32)  # 6 keys
    assert uses_explicit(*fp32, dropout_p=0.0, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast would run the kernel's GEMMs in bf16: SDPA
        assert not uses_explicit(*fp32, dropout_p=0.0, is_causal=True)
        out = attention(*fp32, is_causal=True)
    out.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in fp32)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 inputs under bf16 autocast: the usual explicit case
        assert uses_explicit(*qkv(torch.bfloat16), dropout_p=0.0, is_causal=True)
    monkeypatch.setattr(explicit, "MAX_FP32_CAUSAL_KEYS", 5)
    assert not uses_explicit(*fp32, dropout_p=0.0, is_causal=True), "longer fp32 rows must use SDPA"
    assert uses_explicit(*qkv(torch.bfloat16), dropout_p=0.0, is_causal=True), "bf16 keeps its own limit"


def test_mask_and_is_causal_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either mask or is_causal"):
        attention(*qkv(torch.bfloat16), mask=torch.ones(6, 6, dtype=torch.bool), is_causal=True)


@pytest.mark.usefixtures("fast_reduced_precision")
def test_everything_else_stays_on_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    low = qkv(torch.bfloat16)
    assert not uses_explicit(*qkv(torch.float32), dropout_p=0.0), "bidirectional fp32 must use SDPA"
    assert not uses_explicit(*qkv(torch.float64), dropout_p=0.0, is_causal=True), "fp64 must use SDPA"
    assert not uses_explicit(*qkv(torch.bfloat16, grad=False), dropout_p=0.0), "inference must use SDPA"
    assert not uses_explicit(*low, dropout_p=0.1), "dropout must use SDPA"
    with torch.no_grad():
        assert not uses_explicit(*low, dropout_p=0.0)
    monkeypatch.setattr(explicit, "MAX_SCORE_BYTES", 2 * 3 * 6 * 6 * 2 - 1)  # one byte less than these scores
    assert not uses_explicit(*low, dropout_p=0.0), "large score matrices must use SDPA's O(T)-memory kernel"
    monkeypatch.setattr(explicit, "MAX_SCORE_BYTES", 2**30)
    monkeypatch.setattr(explicit, "MAX_KEYS", 5)  # these rows have 6 keys
    assert not uses_explicit(*low, dropout_p=0.0), "long rows must use SDPA (faster there)"
    assert uses_explicit(*low, dropout_p=0.0, is_causal=True), "causal rows have their own, longer limit"
    monkeypatch.setattr(explicit, "MAX_CAUSAL_KEYS", 5)
    assert not uses_explicit(*low, dropout_p=0.0, is_causal=True)


@pytest.mark.usefixtures("fast_reduced_precision")
def test_transformer_bf16_autocast_gradients_match_fp32() -> None:
    """End to end through the core (causal, padded, rope): bf16 autocast tracks fp32 within bf16 precision."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, depth=2, num_heads=4, position="rope"), num_axes=1)
    x = torch.randn(2, 12, 32)
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, 9:] = False
    coords = torch.arange(12).expand(2, -1)[..., None]  # (B, T, 1)

    def loss_and_grads(bf16: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, valid=valid, coords=coords, causal=True)
        loss = out.float()[valid].square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]  # type: ignore[union-attr]

    loss32, grads32 = loss_and_grads(False)
    loss16, grads16 = loss_and_grads(True)
    torch.testing.assert_close(loss16, loss32, rtol=2e-2, atol=1e-3)
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert (g16 - g32).norm() <= 0.05 * g32.norm() + 1e-4


def test_the_core_compiles_to_one_graph_through_the_explicit_path() -> None:
    """``torch.compile`` (inductor, no graph break) through causal fp32 blocks gives eager's values and gradients.

    Inductor (torch 2.14) mis-strided the forward's ``out=`` and dynamo cannot trace the backward's (hence
    ``scaled_into``'s compiled form); 70 queries make two causal blocks, so the backward's accumulating GEMMs
    (``beta=1``) are traced too.
    """
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, depth=1, num_heads=4, position="rope"), num_axes=1)
    x = torch.randn(2, 70, 32)
    coords = torch.arange(70).expand(2, -1)[..., None]  # (B, T, 1)
    probe = torch.empty(2, 4, 70, 8, requires_grad=True)  # this model's (B, H, T, Dh) queries, keys and values
    assert uses_explicit(probe, probe, probe, dropout_p=0.0, is_causal=True)

    def loss_and_grads(forward: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
        model.zero_grad()
        loss = forward(x, coords=coords, causal=True).square().mean()
        loss.backward()
        return [loss.detach(), *(p.grad.clone() for p in model.parameters())]  # type: ignore[union-attr]

    eager = loss_and_grads(model)
    torch._dynamo.reset()
    compiled = loss_and_grads(torch.compile(model, fullgraph=True))
    for c, e in zip(compiled, eager, strict=True):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)


def test_masked_explicit_attention_compiles_to_eager_values() -> None:
    """The padding-mask path (a query row that reaches no key is zeroed) under ``torch.compile(fullgraph=True)``."""
    mask = padding_mask(5)
    mask[0, ..., :] = False  # row 0 reaches nothing: its output and gradients must be zero, compiled too
    tensors = qkv(torch.float64, 6, 5)
    eager = outputs_and_grads(explicit_attention, tensors, mask=mask)
    torch._dynamo.reset()
    compiled = outputs_and_grads(torch.compile(explicit_attention, fullgraph=True), tensors, mask=mask)
    assert eager[0][0].abs().max() == 0 and eager[1][0].abs().max() == 0  # output and dQ of the row
    for name, c, e in zip(("out", "dq", "dk", "dv"), compiled, eager, strict=True):
        torch.testing.assert_close(c, e, rtol=1e-12, atol=1e-12, msg=name)
