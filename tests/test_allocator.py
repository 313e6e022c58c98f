"""``keep_freed_memory``: freed tensor memory is reused instead of page-faulted back; its callback's wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from modal_tf.allocator import MIB, has_glibc_malloc, keep_freed_memory
from modal_tf.lit import KeepFreedMemory
from modal_tf.lit import allocator as lit_allocator
from modal_tf.lit.cli import trainer_defaults

# Mimics a training step in a fresh process: 40 activations of 4 MiB allocated and touched (forward), then all
# freed (backward), three times; minor page faults counted over the last two rounds, before and after the call.
STEPS = """
import json, resource, torch
from modal_tf.allocator import allocator_state, keep_freed_memory

def faults():
    def step():
        saved = [torch.ones(1 << 20) for _ in range(40)]  # 40 x 4 MiB fp32, written, like saved activations
        del saved
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(); step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default, state_before = faults(), allocator_state()
applied = keep_freed_memory()
print(json.dumps({"default": default, "kept": faults(), "applied": applied, "before": state_before,
                  "after": allocator_state()}))
"""


def run_steps() -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_instead_of_faulted_back() -> None:
    result = run_steps()
    assert result["before"] == "malloc: system default"
    if not has_glibc_malloc():  # another allocator: nothing to tune, and the call must say so
        assert result["applied"] is False and result["after"] == "malloc: system default"
        return
    assert result["applied"] is True
    assert "freed memory kept" in str(result["after"])
    # 2 rounds x 160 MiB = 81,920 pages: by default half to all of them come back from the kernel (measured
    # 41,968 and 81,873, depending on where glibc's adaptive thresholds settle); kept, (almost) none do
    assert int(result["default"]) > 20_000, result  # type: ignore[call-overload]
    assert int(result["kept"]) < 2_000, result  # type: ignore[call-overload]


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-1, ValueError), (1 << 31, ValueError),
                                               (True, TypeError), (1.5, TypeError), ("256M", TypeError)])  # fmt: skip
def test_thresholds_are_validated(value: object, error: type[Exception]) -> None:
    for name in ("mmap_threshold", "trim_threshold"):
        with pytest.raises(error, match=f"{name} must be"):
            keep_freed_memory(**{name: value})  # type: ignore[arg-type]


def test_another_preloaded_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert has_glibc_malloc() is False


def test_cli_defaults_include_the_callback() -> None:
    assert any(isinstance(callback, KeepFreedMemory) for callback in trainer_defaults()["callbacks"])


@pytest.mark.parametrize(("device", "opt_out", "expected"), [("cpu", None, 1), ("cpu", "0", 1), ("cpu", "1", 0),
                                                             ("cuda", None, 0)])  # fmt: skip
def test_callback_applies_on_cpu_unless_opted_out(
    monkeypatch: pytest.MonkeyPatch, device: str, opt_out: str | None, expected: int
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(lit_allocator, "keep_freed_memory", lambda *args: calls.append(args) or True)
    if opt_out is None:
        monkeypatch.delenv(lit_allocator.OPT_OUT, raising=False)
    else:
        monkeypatch.setenv(lit_allocator.OPT_OUT, opt_out)
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))  # only what setup reads
    KeepFreedMemory(mmap_threshold=64 * MIB).setup(trainer, pl.LightningModule(), "fit")  # type: ignore[arg-type]
    assert calls == [(64 * MIB, 1024 * MIB)] * expected
