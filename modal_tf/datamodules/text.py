"""Text recipes' data."""

from __future__ import annotations

from typing import Any

from modal_tf.data.who_did_it import NAMES, who_did_it_samples
from modal_tf.datamodules.base import ModalDataModule, Sample
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import create_tokenizer


class WhoDidIt(ModalDataModule):
    """Order-sensitivity classification: who acted, Tom or Jerry? Generated offline, seeded.

    Args:
        num_train: Training sentences.
        num_val: Validation sentences.
        num_test: Test sentences.
        tokenizer: ``{"name": registry name, **constructor arguments}`` of the text tokenizer.
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        seed: Seed of generation (splits use seed, seed + 1, seed + 2) and shuffling.
    """

    def __init__(
        self,
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 1000,
        tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.tokenizer_spec = dict(tokenizer or {"name": "bytes"})

    def build_splits(self) -> dict[str, list[Sample]]:
        """Three independently seeded splits."""
        return {
            split: [
                {"inputs": {"text": text}, "label": label}
                for text, label in who_did_it_samples(size, self.seed * 1000 + offset)
            ]
            for offset, (split, size) in enumerate(self.sizes.items())
        }

    def build_task(self) -> TaskSpec:
        """One text input; the classes are the two names."""
        spec = dict(self.tokenizer_spec)
        if "name" not in spec:
            raise ValueError(f"data.tokenizer needs a 'name' key, got {self.tokenizer_spec}")
        return TaskSpec({"text": create_tokenizer(spec.pop("name"), **spec)}, class_names=list(NAMES))
