"""Write ``predict`` outputs as JSON lines beside the run's logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter


class JsonlPredictionWriter(BasePredictionWriter):
    """Appends one JSON object per predicted sample to ``<log_dir>/predictions.jsonl``.

    Args:
        filename: File name inside the trainer's log directory (rank-suffixed under DDP).
    """

    def __init__(self, filename: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: Path | None = None
        self.count = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start a fresh file for this predict run."""
        name = self.filename if trainer.world_size == 1 else f"rank{trainer.global_rank}-{self.filename}"
        self.path = Path(trainer.log_dir or trainer.default_root_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.count = 0

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append this batch's predictions."""
        if self.path is None:
            return
        with self.path.open("a", encoding="utf-8") as stream:
            for item in prediction:
                stream.write(json.dumps({"index": self.count, "prediction": item}, ensure_ascii=False) + "\n")
                self.count += 1

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Say where the predictions went."""
        if self.path is not None and trainer.is_global_zero:
            print(f"wrote {self.count} predictions to {self.path}")
