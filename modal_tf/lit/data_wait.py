"""How much of each training step waits for data: a Lightning callback (timm logs ``data_time`` the same way).

The training loop fetches a batch, then calls ``on_train_batch_start``, the step, ``on_train_batch_end``. The time
from one batch's end to the next batch's start is therefore the fetch (DataLoader, collation, tokenization with
``num_workers=0``) plus the loop's own bookkeeping; the time from start to end is the step. The share of the
first over both says whether the GPU/CPU waits on the input pipeline (target < 10 %: add workers otherwise).
Validation runs inside that gap and is excluded; work that other callbacks do in their own ``on_train_batch_end``
after this one (e.g. a checkpoint saved every few steps) is not, so read the figure next to such settings.

Use it from the CLI: ``modal-tf fit --config ... --trainer.callbacks+=modal_tf.lit.DataWaitMonitor``.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info


class DataWaitMonitor(Callback):
    """Logs ``perf/data_wait_share`` and ``perf/step_seconds`` and prints a summary when training ends.

    Args:
        skip: Batches not counted at the start of each epoch (worker start-up, allocator and kernel warm-up).
        log_every_n_steps: How often the running figures go to the logger (0 = only the final summary).
    """

    def __init__(self, skip: int = 2, log_every_n_steps: int = 50) -> None:
        for name, value in (("skip", skip), ("log_every_n_steps", log_every_n_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"DataWaitMonitor.{name} must be an int >= 0, got {value!r}")
        self.skip = skip
        self.log_every_n_steps = log_every_n_steps
        self.wait_seconds = 0.0
        self.step_seconds = 0.0
        self.steps = 0
        self._batch_end: float | None = None
        self._batch_start = 0.0
        self._seen_in_epoch = 0

    @property
    def data_wait_share(self) -> float:
        """Fetch time over fetch + step time of the counted batches (NaN before any)."""
        total = self.wait_seconds + self.step_seconds
        return self.wait_seconds / total if total > 0 else float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batch_end = time.perf_counter()  # the first fetch of the epoch starts about now
        self._seen_in_epoch = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_start = time.perf_counter()
        if self._batch_end is not None and self._seen_in_epoch >= self.skip:
            self.wait_seconds += self._batch_start - self._batch_end

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._seen_in_epoch >= self.skip:
            self.step_seconds += now - self._batch_start
            self.steps += 1
            if self.log_every_n_steps and self.steps % self.log_every_n_steps == 0:
                self._log(trainer)
        self._seen_in_epoch += 1
        self._batch_end = time.perf_counter()  # after our own bookkeeping, so it is not counted as data wait

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and self._batch_end is not None:
            self._batch_end = time.perf_counter()  # mid-epoch validation is not data wait

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.steps:
            return
        self._log(trainer)
        rank_zero_info(
            f"data wait: {self.data_wait_share:.1%} of step time over {self.steps} steps "
            f"({self.step_seconds / self.steps * 1e3:.1f} ms per step, "
            f"{self.wait_seconds / self.steps * 1e3:.1f} ms waiting for data)"
        )

    def _log(self, trainer: pl.Trainer) -> None:
        metrics = {"perf/data_wait_share": self.data_wait_share, "perf/step_seconds": self.step_seconds / self.steps}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
