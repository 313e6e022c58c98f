"""DataWaitMonitor measures the share of step time spent fetching batches."""

from __future__ import annotations

import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from modal_tf.lit import DataWaitMonitor


class SlowDataset(Dataset[torch.Tensor]):
    """Eight samples, each taking ``delay`` seconds to fetch."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        time.sleep(self.delay)
        return torch.full((4,), float(index))


class SlowStep(pl.LightningModule):
    """A linear model whose training step takes at least ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        time.sleep(self.delay)
        return self.layer(batch).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SlowValidation(SlowStep):
    """Adds a validation step that sleeps, validated twice per epoch."""

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        time.sleep(0.05)


def share(tmp_path: Path, fetch_delay: float, step_delay: float, validate: bool = False) -> DataWaitMonitor:
    monitor = DataWaitMonitor(skip=1, log_every_n_steps=0)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[monitor], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu", val_check_interval=2,
        num_sanity_val_steps=0, limit_val_batches=2 if validate else 0,
    )  # fmt: skip
    model = SlowValidation(step_delay) if validate else SlowStep(step_delay)
    loader = DataLoader(SlowDataset(fetch_delay), batch_size=2)
    trainer.fit(model, loader, loader if validate else None)
    return monitor


def test_slow_data_shows_a_high_share_and_slow_steps_a_low_one(tmp_path: Path) -> None:
    slow_data = share(tmp_path, fetch_delay=0.02, step_delay=0.0)  # 40 ms fetch per batch of 2
    slow_step = share(tmp_path, fetch_delay=0.0, step_delay=0.04)
    assert slow_data.steps == slow_step.steps == 3  # 4 batches, first skipped
    assert slow_data.data_wait_share > 0.7, slow_data.data_wait_share
    assert slow_step.data_wait_share < 0.3, slow_step.data_wait_share


def test_mid_epoch_validation_is_not_counted_as_data_wait(tmp_path: Path) -> None:
    monitor = share(tmp_path, fetch_delay=0.0, step_delay=0.04, validate=True)  # validation: 2 x 50 ms, twice
    assert monitor.data_wait_share < 0.3, monitor.data_wait_share


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"DataWaitMonitor\.skip"):
        DataWaitMonitor(skip=-1)
    with pytest.raises(ValueError, match="log_every_n_steps"):
        DataWaitMonitor(log_every_n_steps=1.5)  # type: ignore[arg-type]
