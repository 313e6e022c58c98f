"""DataModule base: owns the tokenizers, fits them on the training split, collates with masks.

A subclass says what the data is (``build_splits``) and how it is tokenized
(``build_task``); this class does the rest the same way for every modality.
A sample is ``{"inputs": {name: raw, ...}, "label": int}`` (classification) or
``{"inputs": {...}, "target": raw}`` (generation; inputs may be empty for a plain LM).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from modal_tf.datamodules.prefetch import PrefetchingLoader
from modal_tf.datamodules.resume import EpochSampler, ResumableLoader
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import DiscreteTokenizer, Tokenizer

Sample = dict[str, Any]
SPLITS = ("train", "val", "test")


def seeded_splits(sizes: dict[str, int], seed: int, make: Callable[[int, int], list[Any]]) -> dict[str, list[Any]]:
    """``make(size, split_seed)`` per split; the i-th split (train, val, test order) gets ``seed * 1000 + i``."""
    return {split: make(size, seed * 1000 + offset) for offset, (split, size) in enumerate(sizes.items())}


def require_discrete(tokenizer: Tokenizer, argument: str) -> DiscreteTokenizer:
    """``tokenizer`` if it produces ids, else a ``TypeError`` naming ``argument``."""
    if not isinstance(tokenizer, DiscreteTokenizer):
        raise TypeError(f"{argument} must be a discrete (id) tokenizer, got {type(tokenizer).__name__}")
    return tokenizer


class EncodedDataset(Dataset[dict[str, Any]]):
    """Encodes raw samples lazily, in DataLoader workers."""

    def __init__(self, samples: Sequence[Sample], task: TaskSpec) -> None:
        self.samples = samples
        self.task = task

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        item: dict[str, Any] = {
            "inputs": {name: tok.encode(sample["inputs"][name]) for name, tok in self.task.inputs.items()}
        }
        if self.task.target is not None:
            item["target"] = self.task.target.encode_target(sample["target"])
        else:
            item["label"] = sample["label"]
        return item


class Collator:
    """Pads each named input (and the target) into a ``TokenBatch``."""

    def __init__(self, task: TaskSpec) -> None:
        self.task = task

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "inputs": {
                name: tok.collate([item["inputs"][name] for item in items]) for name, tok in self.task.inputs.items()
            }
        }
        if self.task.target is not None:
            batch["target"] = self.task.target.collate([item["target"] for item in items])
        else:
            batch["labels"] = torch.tensor([item["label"] for item in items])
        return batch


class ModalDataModule(pl.LightningDataModule):
    """Base of every recipe's data.

    Args:
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (0 = encode in the main process).
        seed: Seed of data generation and shuffling.

    Attributes:
        prefetch_thread: Receive worker batches on a thread of the main process (``datamodules/prefetch.py``);
            a family turns it on where it measured faster (audio), and an instance may set it.
    """

    prefetch_thread: bool = False

    def __init__(self, batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.splits: dict[str, list[Sample]] | None = None
        self.task: TaskSpec | None = None

    @abstractmethod
    def build_splits(self) -> dict[str, list[Sample]]:
        """Samples of the ``train``, ``val`` and ``test`` splits."""

    @abstractmethod
    def build_task(self) -> TaskSpec:
        """Unfitted tokenizers and the target or class names."""

    def restore_task(self, task: TaskSpec) -> None:
        """Use tokenizers restored from a checkpoint instead of fitting new ones."""
        self.task = task

    def setup(self, stage: str | None = None) -> None:
        """Build the splits and the task; fit tokenizers on the training split only."""
        if self.splits is None:
            splits = self.build_splits()
            for name in SPLITS:
                if not splits.get(name):
                    raise ValueError(f"{type(self).__name__}.build_splits() returned no {name!r} samples")
            self.splits = splits
        if self.task is None:
            task = self.build_task()
            train = self.splits["train"]
            for name, tokenizer in task.inputs.items():
                if tokenizer.requires_fit:
                    tokenizer.fit(sample["inputs"][name] for sample in train)
            if task.target is not None and task.target.requires_fit:
                task.target.fit(sample["target"] for sample in train)
            self.task = task

    def make_dataset(self, split: str) -> Dataset[dict[str, Any]]:
        """The dataset of one split (default: encode each sample lazily)."""
        if self.splits is None or self.task is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for the {split} data")
        return EncodedDataset(self.splits[split], self.task)

    def _loader(self, split: str, shuffle: bool) -> DataLoader[dict[str, Any]]:
        if self.splits is None or self.task is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for the {split} loader")
        dataset = self.make_dataset(split)
        options: dict[str, Any] = {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "collate_fn": Collator(self.task),
            "persistent_workers": self.num_workers > 0,
            "prefetch_thread": self.prefetch_thread,
        }
        if not shuffle:
            return PrefetchingLoader(dataset, **options)
        tag_epoch = bool(getattr(dataset, "epoch_tagged", False))  # it reads epoch * len + index keys
        sampler = EpochSampler(len(dataset), self.seed, tag_epoch=tag_epoch)  # type: ignore[arg-type]
        return ResumableLoader(dataset, sampler=sampler, batches_done=self._batches_trained, **options)

    def _batches_trained(self) -> int | None:
        """Batches the model has trained on so far (restored from checkpoints), for exact resume."""
        trainer = self.trainer
        module = trainer.lightning_module if trainer is not None else None
        return getattr(module, "batches_trained", None)

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Training batches in an order fixed by ``(seed, epoch)``, resumable mid-epoch."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Validation batches."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Test batches."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Prediction runs over the test split."""
        return self._loader("test", shuffle=False)
