"""A callback that applies ``modal_tf.allocator.keep_freed_memory`` to CPU training runs."""

from __future__ import annotations

import logging
import os

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from modal_tf.allocator import allocator_state, keep_freed_memory

log = logging.getLogger(__name__)
OPT_OUT = "MODAL_TF_SYSTEM_MALLOC"  # set to 1 to keep the system allocator's default behaviour


class KeepFreedMemory(Callback):
    """On a CPU run, keep freed tensor memory in the process instead of page-faulting it back every step.

    Part of the CLI's default callbacks; a no-op on GPU runs, off glibc, or when the environment variable
    ``MODAL_TF_SYSTEM_MALLOC=1`` is set. See ``modal_tf.allocator`` for what it changes and what it saves.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu" or os.environ.get(OPT_OUT, "") not in ("", "0"):
            return
        if keep_freed_memory():
            log.info("CPU run: %s (%s=1 turns this off)", allocator_state(), OPT_OUT)
