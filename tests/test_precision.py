"""Reduced precision on CPUs without fast kernels for it: the probe, the attention dispatch, the run's warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from helpers import ReverseWords, pin_reduced_precision_kernels
from torch import nn

from modal_tf.core import TransformerConfig, cpu_support, native_reduced_precision
from modal_tf.core import explicit_attention as explicit
from modal_tf.core.cpu_support import fast_cpu_matmul
from modal_tf.lit import ModalModule
from modal_tf.lit.precision import precision_dtype, slow_precision_warning, unemulated_layers
from modal_tf.models import DecoderOnly
from modal_tf.tokenizers import ByteTokenizer


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
    kernels: list[torch.dtype] = []  # the dtype each attention kernel ran in
    apply, sdpa = explicit.ExplicitAttention.apply, F.scaled_dot_product_attention
    monkeypatch.setattr(explicit.ExplicitAttention, "apply", lambda *a: kernels.append(a[0].dtype) or apply(*a))
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: kernels.append(a[0].dtype) or sdpa(*a, **k))
    for fast in (True, False):
        pin_reduced_precision_kernels(monkeypatch, fast)
        for causal in (True, False):
            assert explicit.uses_explicit(*qkv(dtype), dropout_p=0.0, is_causal=causal) is fast
        assert explicit.uses_explicit(*qkv(torch.float32), dropout_p=0.0, is_causal=True), "fp32 keeps BLAS"
        for causal in (True, False):
            kernels.clear()
            out = explicit.attention(*qkv(dtype), is_causal=causal)
            assert out.shape == (2, 3, 6, 8) and out.dtype == dtype
            # fast: the reduced kernels; slow: emulated, so the fp32 dispatch (explicit when causal, else SDPA)
            assert kernels == [dtype if fast else torch.float32]
        with native_reduced_precision():
            kernels.clear()
            explicit.attention(*qkv(dtype), is_causal=True)
            assert kernels == [dtype], "native_reduced_precision() leaves the choice to torch"


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
    ours = DecoderOnly(TransformerConfig(dim=16, depth=1, num_heads=2), ByteTokenizer())
    pin_reduced_precision_kernels(monkeypatch, fast=False)
    message = slow_precision_warning("bf16-mixed", cpu, ours)
    assert message is not None and "'bf16-mixed'" in message and "bfloat16" in message and "32-true" in message
    assert "fp32 kernels" in message and "not modal_tf's" not in message, "our layers emulate: not a crawl"
    assert "float16" in str(slow_precision_warning("16-mixed", cpu, ours))
    assert slow_precision_warning("32-true", cpu, ours) is None
    assert slow_precision_warning("bf16-mixed", cuda, ours) is None, "GPUs have their own bf16 units"
    pin_reduced_precision_kernels(monkeypatch, fast=True)
    assert slow_precision_warning("bf16-mixed", cpu, ours) is None


def test_the_warning_names_the_layers_that_do_not_emulate(monkeypatch: pytest.MonkeyPatch) -> None:
    pin_reduced_precision_kernels(monkeypatch, fast=False)
    foreign = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), *(nn.Linear(4, 4) for _ in range(4)))
    assert unemulated_layers(foreign) == ["0", "2", "3", "4", "5"]
    message = slow_precision_warning("bf16-true", torch.device("cpu"), foreign)
    assert message is not None and "5 layers of this model are not modal_tf's ('0', '2', '3' and 2 more)" in message
    assert "~20x slower" in message and "32-true" in message
    assert unemulated_layers(nn.MultiheadAttention(8, 2)) == ["MultiheadAttention", "out_proj"]


@pytest.mark.usefixtures("slow_reduced_precision")
def test_one_module_warns_once_per_precision_it_runs_at(tmp_path: Path) -> None:
    def trainer(precision: str) -> pl.Trainer:
        return pl.Trainer(
            max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu", limit_val_batches=0,
            limit_test_batches=1, precision=precision,  # type: ignore[arg-type]
        )  # fmt: skip

    def warned() -> int:
        return sum("no fast bfloat16" in str(w.message) for w in caught)

    module = ModalModule(shape="decoder_only", transformer=TransformerConfig(dim=16, depth=1, num_heads=2))
    data = ReverseWords(batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = trainer("32-true")
        fit.fit(module, datamodule=data)
        fit.test(module, datamodule=data, verbose=False)
        assert warned() == 0
        bf16 = trainer("bf16-mixed")
        bf16.test(module, datamodule=data, verbose=False)
        assert warned() == 1, "the same module, now at bf16-mixed"
        bf16.test(module, datamodule=data, verbose=False)
        trainer("bf16-mixed").test(module, datamodule=data, verbose=False)
        assert warned() == 1, "once per precision, however many stages"
