"""A Lightning callback that records one run (validation curve, training seconds, progress ticks) and
stops it once its training time, validation excluded, reaches a wall-clock budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl


class RunRecorder(pl.Callback):
    """Validation accuracy after each validation, and wall time with validation time taken out.

    Args:
        on_step: Called after every training step (drives the progress bar); ``None`` for nothing.
        time_limit: Stop training after this many seconds outside validation; ``None`` for no limit.
        metric: The logged validation metric to record.
    """

    def __init__(
        self, on_step: Callable[[], None] | None = None, time_limit: float | None = None, metric: str = "val/acc"
    ) -> None:
        self.on_step = on_step
        self.time_limit = time_limit
        self.metric = metric
        self.curve: list[tuple[int, float]] = []  # (global step, validation accuracy)
        self.fit_seconds = 0.0
        self.validation_seconds = 0.0
        self._fit_started = 0.0
        self._validation_started = 0.0

    @property
    def train_seconds(self) -> float:
        """Seconds of the fit spent outside validation (data loading + steps), the cost we compare."""
        return max(0.0, self.fit_seconds - self.validation_seconds)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the fit clock."""
        self._fit_started = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop the fit clock."""
        self.fit_seconds = time.perf_counter() - self._fit_started

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Tick the progress bar; stop at the time limit (Lightning's ``max_time`` would count validation too)."""
        if self.on_step is not None:
            self.on_step()
        elapsed = time.perf_counter() - self._fit_started - self.validation_seconds
        if self.time_limit is not None and elapsed >= self.time_limit:
            trainer.should_stop = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the validation clock."""
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop the validation clock and record the accuracy (sanity checks are not part of the curve)."""
        self.validation_seconds += time.perf_counter() - self._validation_started
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        self.curve.append((trainer.global_step, float(trainer.callback_metrics[self.metric])))
