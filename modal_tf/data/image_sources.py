"""Real image data sets through torchvision (download when online) and users' ImageFolder trees.

Every loader returns ``{"train"|"val"|"test": [(image (C, H, W) uint8 tensor, label), ...]}``
plus the class names, the same shape as the embedded data sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ImageSplits = dict[str, list[tuple[torch.Tensor, int]]]


def _to_tensor(image: Any) -> torch.Tensor:
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(image)  # (C, H, W) uint8


def _convert(dataset: Any) -> list[tuple[torch.Tensor, int]]:
    return [(_to_tensor(image), int(label)) for image, label in dataset]


def torchvision_splits(
    name: str, root: str | Path, download: bool, val_size: int = 5000
) -> tuple[ImageSplits, list[str]]:
    """CIFAR-10 or MNIST: the official test set, and the last ``val_size`` training images as val."""
    from torchvision import datasets

    table = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST}
    if name not in table:
        raise ValueError(f"torchvision source must be one of {sorted(table)}, got {name!r}")
    try:
        train = table[name](str(root), train=True, download=download)
        test = table[name](str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{name} not found under {root} ({error}); pass download=true when online, or put the files there"
        ) from None
    except OSError as error:
        raise ConnectionError(f"could not download {name} into {root}: {error}") from None
    train_items = _convert(train)
    if len(train_items) <= val_size:
        val_size = max(1, len(train_items) // 10)
    splits = {"train": train_items[:-val_size], "val": train_items[-val_size:], "test": _convert(test)}
    return splits, list(train.classes)


def image_folder_splits(root: str | Path) -> tuple[ImageSplits, list[str]]:
    """``root/<class>/<image>`` files; image ``i`` (sorted) goes to test if ``i % 20 == 0``, val if 1."""
    from torchvision.datasets import ImageFolder

    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    try:
        dataset = ImageFolder(str(folder))
    except (FileNotFoundError, RuntimeError) as error:
        raise FileNotFoundError(f"{folder} holds no class folders with images: {error}") from None
    splits: ImageSplits = {"train": [], "val": [], "test": []}
    for index, (image, label) in enumerate(dataset):
        name = "test" if index % 20 == 0 else "val" if index % 20 == 1 else "train"
        splits[name].append((_to_tensor(image.convert("RGB")), int(label)))
    return splits, list(dataset.classes)
