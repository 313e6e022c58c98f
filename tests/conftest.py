"""Test-wide settings: one intra-op thread (oversubscription on a shared 2-core box made steps
up to 18x slower), no hub access, deterministic seeds, and freed memory kept from the start (the CLI
tests would switch it on part-way through the session otherwise; process-wide either way)."""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from helpers import pin_reduced_precision_kernels

from modal_tf.lit.allocator import keep_freed_memory_for

torch.set_num_threads(1)
keep_freed_memory_for("cpu")  # honours MODAL_TF_SYSTEM_MALLOC=1, to run the suite under the system default


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def fast_reduced_precision(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dispatch as on a CPU with fast bf16/fp16 kernels (AVX-512/AMX), on any machine."""
    pin_reduced_precision_kernels(monkeypatch, fast=True)
    yield
    torch._dynamo.reset()  # no graph compiled under the pin outlives it


@pytest.fixture
def slow_reduced_precision(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dispatch as on a CPU without fast bf16/fp16 kernels (AVX2 only), on any machine."""
    pin_reduced_precision_kernels(monkeypatch, fast=False)
    yield
    torch._dynamo.reset()  # no graph compiled under the pin outlives it
