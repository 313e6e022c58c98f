"""Reduced precision on CPUs without fast kernels for it: the probe, the attention dispatch, the run's warning."""

from __future__ import annotations

import pytest
import torch

from modal_tf.core import cpu_support
from modal_tf.core import explicit_attention as explicit
from modal_tf.core.cpu_support import fast_cpu_matmul
from modal_tf.lit import precision
from modal_tf.lit.precision import precision_dtype, slow_precision_warning


def test_blas_dtypes_are_always_fast_and_others_never() -> None:
    assert fast_cpu_matmul(torch.float32) and fast_cpu_matmul(torch.float64)
    assert not fast_cpu_matmul(torch.int64) and not fast_cpu_matmul(torch.float8_e4m3fn)


@pytest.mark.parametrize(("dtype", "probe"), [(torch.bfloat16, "bf16"), (torch.float16, "fp16")])
def test_reduced_precision_follows_torchs_own_probe_and_the_onednn_switch(dtype: torch.dtype, probe: str) -> None:
    available = torch.backends.mkldnn.is_available()  # a torch without oneDNN has neither the probe nor the kernels
    expected = available and bool(getattr(torch.ops.mkldnn, f"_is_mkldnn_{probe}_supported")())
    assert fast_cpu_matmul(dtype) is expected
    with torch.backends.mkldnn.flags(enabled=False):  # torch's matmul then skips oneDNN: the loop kernel
        assert not fast_cpu_matmul(dtype)


def test_a_torch_without_the_probe_counts_as_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_support, "_ONEDNN_PROBES", {torch.bfloat16: "_no_such_probe"})
    cpu_support._onednn_supports.cache_clear()
    try:
        assert not fast_cpu_matmul(torch.bfloat16)
    finally:
        cpu_support._onednn_supports.cache_clear()


def qkv(dtype: torch.dtype) -> list[torch.Tensor]:
    return [torch.randn(2, 3, 6, 8).to(dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_attention_takes_the_explicit_path_only_on_fast_kernels(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    calls: list[int] = []
    apply = explicit.ExplicitAttention.apply
    monkeypatch.setattr(explicit.ExplicitAttention, "apply", lambda *args: calls.append(1) or apply(*args))
    for fast in (True, False):
        monkeypatch.setattr(explicit, "fast_cpu_matmul", lambda d, fast=fast: fast or d == torch.float32)
        for causal in (True, False):
            assert explicit.uses_explicit(*qkv(dtype), dropout_p=0.0, is_causal=causal) is fast
        assert explicit.uses_explicit(*qkv(torch.float32), dropout_p=0.0, is_causal=True), "fp32 keeps BLAS"
        calls.clear()
        out = explicit.attention(*qkv(dtype), is_causal=True)
        assert len(calls) == int(fast), "slow kernels must send reduced precision to SDPA"
        assert out.shape == (2, 3, 6, 8) and out.dtype == dtype


def test_reduced_precision_attention_compiles_to_one_graph_whatever_the_probe_says() -> None:
    """The probe is a constant to ``torch.compile`` (it crashed ``fullgraph=True`` on bf16 when traced)."""
    q, k, v = qkv(torch.bfloat16)
    compiled = torch.compile(lambda q, k, v: explicit.attention(q, k, v, is_causal=True), fullgraph=True)
    out = compiled(q, k, v)
    out.float().sum().backward()
    torch.testing.assert_close(out, explicit.attention(q, k, v, is_causal=True), rtol=2e-2, atol=2e-2)
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize(
    ("setting", "dtype"),
    [("bf16-mixed", torch.bfloat16), ("bf16-true", torch.bfloat16), ("bf16", torch.bfloat16),
     ("16-mixed", torch.float16), ("16-true", torch.float16), ("32-true", None), ("64-true", None),
     ("transformer-engine", None), ("160-mixed", None)],
)  # fmt: skip
def test_precision_settings_map_to_their_matmul_dtype(setting: str, dtype: torch.dtype | None) -> None:
    assert precision_dtype(setting) == dtype


def test_the_warning_names_the_setting_and_the_fix_only_for_slow_cpu_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(precision, "fast_cpu_matmul", lambda dtype: dtype == torch.float32)
    message = slow_precision_warning("bf16-mixed", cpu)
    assert message is not None and "'bf16-mixed'" in message and "bfloat16" in message and "32-true" in message
    assert "float16" in str(slow_precision_warning("16-mixed", cpu))
    assert slow_precision_warning("32-true", cpu) is None
    assert slow_precision_warning("bf16-mixed", cuda) is None, "GPUs have their own bf16 units"
    monkeypatch.setattr(precision, "fast_cpu_matmul", lambda dtype: True)
    assert slow_precision_warning("bf16-mixed", cpu) is None
