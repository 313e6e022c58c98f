"""``keep_freed_memory``: freed tensor memory is reused instead of page-faulted back; its callback's wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import lightning.pytorch as pl
import pytest

from modal_tf.allocator import has_glibc_malloc, keep_freed_memory
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


@pytest.mark.parametrize("value", [0, -1, 1 << 31, True, 1.5, "256M"])
def test_thresholds_are_validated(value: object) -> None:
    with pytest.raises(ValueError, match="mmap_threshold must be a number of bytes"):
        keep_freed_memory(mmap_threshold=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trim_threshold must be a number of bytes"):
        keep_freed_memory(trim_threshold=value)  # type: ignore[arg-type]


def test_cli_defaults_include_the_callback() -> None:
    assert any(isinstance(callback, KeepFreedMemory) for callback in trainer_defaults()["callbacks"])


@pytest.mark.parametrize(("opt_out", "expected"), [(None, 1), ("0", 1), ("1", 0)])
def test_callback_applies_on_cpu_unless_opted_out(
    monkeypatch: pytest.MonkeyPatch, opt_out: str | None, expected: int
) -> None:
    calls: list[None] = []
    monkeypatch.setattr(lit_allocator, "keep_freed_memory", lambda: calls.append(None) or True)
    if opt_out is None:
        monkeypatch.delenv(lit_allocator.OPT_OUT, raising=False)
    else:
        monkeypatch.setenv(lit_allocator.OPT_OUT, opt_out)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    KeepFreedMemory().setup(trainer, pl.LightningModule(), "fit")
    assert len(calls) == expected
