"""Test-wide settings: one intra-op thread (oversubscription on a shared 2-core box made steps
up to 18x slower), no hub access, deterministic seeds, and freed memory kept from the start (the CLI
tests would switch it on part-way through the session otherwise; process-wide either way)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from modal_tf.lit.allocator import keep_freed_memory_for

torch.set_num_threads(1)
keep_freed_memory_for("cpu")  # honours MODAL_TF_SYSTEM_MALLOC=1, to run the suite under the system default


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
