"""Recipe data: human-activity recognition from simulated IMU windows (a ``ModalDataModule``).

Notation: C channels, S samples per window.

A recipe names this class by its import path (``data.class_path:
modal_tf_sensors.data.ActivityData``) and the tokenizer by its registry name
(``tokenizer: {name: sensor_frames, ...}``); ``ModalDataModule`` does the rest:
it fits the tokenizer on the training split only, encodes lazily in DataLoader
workers and pads batches with masks.
"""

from __future__ import annotations

from typing import Any

from modal_tf.datamodules import ModalDataModule
from modal_tf.datamodules.base import Sample
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import tokenizer_from_spec
from modal_tf_sensors.simulate import ACTIVITIES, activity_windows

DEFAULT_TOKENIZER = {"name": "sensor_frames", "channels": 6, "frame": 8}


class ActivityData(ModalDataModule):
    """Which activity is this 2.56 s IMU window: standing, walking, running or jumping? Generated offline, seeded.

    Args:
        num_train: Training windows.
        num_val: Validation windows.
        num_test: Test windows.
        window: Samples S per window (at 50 Hz).
        noise: Accelerometer white-noise standard deviation in m/s^2 (gyroscope: a tenth, in rad/s).
        tokenizer: ``{"name": registry name, **constructor arguments}`` of the sensor tokenizer.
        batch_size: Windows per batch.
        num_workers: DataLoader workers.
        seed: Seed of generation (each split has its own stream) and shuffling.
    """

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 400,
        num_test: int = 1000,
        window: int = 128,
        noise: float = 1.0,
        tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test), ("window", window)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name} must be a positive int, got {value!r}")
        if not isinstance(noise, int | float) or isinstance(noise, bool) or not noise >= 0:
            raise ValueError(f"data.noise must be a number >= 0, got {noise!r}")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.window = window
        self.noise = float(noise)
        self.tokenizer_spec = dict(tokenizer or DEFAULT_TOKENIZER)

    def build_splits(self) -> dict[str, list[Sample]]:
        """Three independently seeded splits of ``{"inputs": {"sensor": (C, S) array}, "label": int}``."""
        return {
            split: [
                {"inputs": {"sensor": window}, "label": label}
                for window, label in activity_windows(size, self.seed * 1000 + offset, self.window, self.noise)
            ]
            for offset, (split, size) in enumerate(self.sizes.items())
        }

    def build_task(self) -> TaskSpec:
        """One sensor input; the classes are the four activities."""
        return TaskSpec(
            {"sensor": tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer")}, class_names=list(ACTIVITIES)
        )
