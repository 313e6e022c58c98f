"""A callback that applies ``modal_tf.allocator.keep_freed_memory`` to CPU training runs."""

from __future__ import annotations

import os

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from modal_tf.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, allocator_state, keep_freed_memory

OPT_OUT = "MODAL_TF_SYSTEM_MALLOC"  # set to 1 to keep the system allocator's default behaviour


def keep_freed_memory_for(
    device_type: str, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> bool:
    """``keep_freed_memory`` for a run on ``device_type``: only on ``"cpu"`` and unless ``MODAL_TF_SYSTEM_MALLOC``
    is set to anything but ``0``. Returns whether the setting is in force."""
    if device_type != "cpu" or os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    return keep_freed_memory(mmap_threshold, trim_threshold)


class KeepFreedMemory(Callback):
    """On a CPU run, keep freed tensor memory in the process instead of page-faulting it back every step.

    Part of the CLI's default callbacks; a no-op on GPU runs, where another allocator serves ``malloc``, or when
    the environment variable ``MODAL_TF_SYSTEM_MALLOC=1`` is set. See ``modal_tf.allocator`` for what it changes
    and what it saves; the thresholds are ``keep_freed_memory``'s.
    """

    def __init__(self, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> None:
        self.mmap_threshold, self.trim_threshold = mmap_threshold, trim_threshold

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        device_type = trainer.strategy.root_device.type
        if keep_freed_memory_for(device_type, self.mmap_threshold, self.trim_threshold):
            rank_zero_info(f"CPU run: {allocator_state()} ({OPT_OUT}=1 turns this off)")
