"""Vision recipes' data: digits, shapes scenes, CIFAR-10 / MNIST and users' image folders."""

from __future__ import annotations

import random
from typing import Any

from modal_tf.data import digits, image_sources, shapes
from modal_tf.datamodules.base import ModalDataModule, Sample, require_discrete, seeded_splits
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import tokenizer_from_spec

EMBEDDED = ("digits", "shapes")


def subsample(items: list[Any], fraction: float, seed: int) -> list[Any]:
    """A seeded ``fraction`` of ``items`` (at least one), for training-set-size sweeps."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data.train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return items
    count = max(1, round(len(items) * fraction))
    return random.Random(seed).sample(items, count)


class ImageClassification(ModalDataModule):
    """Image classification on embedded or real data.

    Args:
        source: ``digits`` (sklearn, 8x8), ``shapes`` (generated scenes; class = kind of the largest
            shape), ``cifar10`` / ``mnist`` (torchvision, downloaded into ``root``) or an ImageFolder path.
        train_fraction: Use this seeded fraction of the training split (data-size sweeps).
        num_train: Generated training scenes (``shapes`` only; val/test get ``num_eval``).
        num_eval: Generated validation and test scenes each (``shapes`` only).
        canvas: Scene size in pixels (``shapes`` only).
        root: Download/cache folder for torchvision data sets.
        download: Download torchvision data sets when missing.
        tokenizer: Image tokenizer ``{"name": "patch", "patch_size": ..., "channels": ...}``.
        batch_size: Images per batch.
        num_workers: DataLoader workers.
        seed: Generation, subsampling and shuffling seed.
    """

    def __init__(
        self,
        source: str = "digits",
        train_fraction: float = 1.0,
        num_train: int = 5000,
        num_eval: int = 1000,
        canvas: int = 32,
        root: str = "data",
        download: bool = True,
        tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        subsample([0], train_fraction, seed)  # validates the fraction now, not after loading data
        self.source = source
        self.train_fraction = train_fraction
        self.num_train, self.num_eval, self.canvas = num_train, num_eval, canvas
        self.root, self.download = root, download
        self.tokenizer_spec = dict(tokenizer or {"name": "patch", "patch_size": 2, "channels": 1})
        self.class_names: list[str] = []

    def image_splits(self) -> image_sources.ImageSplits:
        """``(image, label)`` per split; also sets ``class_names``."""
        if self.source == "digits":
            splits = digits.digit_splits()
            self.class_names = [str(digit) for digit in range(10)]
        elif self.source == "shapes":
            sizes = {"train": self.num_train, "val": self.num_eval, "test": self.num_eval}
            splits = seeded_splits(
                sizes,
                self.seed,
                lambda size, seed: [(image, label) for image, label, _ in shapes.shape_scenes(size, seed, self.canvas)],
            )
            self.class_names = list(shapes.KINDS)
        elif self.source in ("cifar10", "mnist"):
            splits, self.class_names = image_sources.torchvision_splits(self.source, self.root, self.download)
        else:
            splits, self.class_names = image_sources.image_folder_splits(self.source)
        splits["train"] = subsample(splits["train"], self.train_fraction, self.seed)
        return splits

    def build_splits(self) -> dict[str, list[Sample]]:
        """Labelled images per split."""
        return {
            split: [{"inputs": {"image": image}, "label": label} for image, label in items]
            for split, items in self.image_splits().items()
        }

    def build_task(self) -> TaskSpec:
        """One image input; the data set's classes."""
        return TaskSpec(
            {"image": tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer")}, class_names=self.class_names
        )


class ShapeCaptions(ModalDataModule):
    """Image to text: describe a generated shapes scene ("a small red circle left of a large blue square").

    Args:
        num_train: Training scenes.
        num_eval: Validation and test scenes each.
        canvas: Scene size in pixels.
        max_shapes: At most this many shapes per scene (1-3).
        image_tokenizer: Tokenizer of the image.
        text_tokenizer: Tokenizer of the caption (discrete).
        batch_size: Scenes per batch.
        num_workers: DataLoader workers.
        seed: Generation and shuffling seed.
    """

    def __init__(
        self,
        num_train: int = 5000,
        num_eval: int = 300,
        canvas: int = 32,
        max_shapes: int = 2,
        image_tokenizer: dict[str, Any] | None = None,
        text_tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.sizes = {"train": num_train, "val": num_eval, "test": num_eval}
        self.canvas, self.max_shapes = canvas, max_shapes
        self.image_spec = dict(image_tokenizer or {"name": "patch", "patch_size": 4, "channels": 3})
        self.text_spec = dict(text_tokenizer or {"name": "bytes"})

    def build_splits(self) -> dict[str, list[Sample]]:
        """Captioned scenes per split (independent seeds)."""
        return seeded_splits(
            self.sizes,
            self.seed,
            lambda size, seed: [
                {"inputs": {"image": image}, "target": text}
                for image, _, text in shapes.shape_scenes(size, seed, self.canvas, self.max_shapes)
            ],
        )

    def build_task(self) -> TaskSpec:
        """Image in, caption out."""
        text = require_discrete(tokenizer_from_spec(self.text_spec, "data.text_tokenizer"), "data.text_tokenizer")
        return TaskSpec({"image": tokenizer_from_spec(self.image_spec, "data.image_tokenizer")}, target=text)
