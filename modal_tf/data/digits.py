"""scikit-learn's ``load_digits``: 1,797 real 8x8 handwritten digits shipped inside the wheel.

Fixed split by index: ``i % 10 == 0`` -> test (180 images), ``i % 10 == 1`` -> val (180),
the rest -> train (1,437). Images are ``(1, 8, 8)`` uint8 tensors scaled from 0-16 to 0-255.
"""

from __future__ import annotations

import torch


def digit_splits() -> dict[str, list[tuple[torch.Tensor, int]]]:
    """``(image (1, 8, 8) uint8, label)`` per split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round().to(torch.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.tolist()
    split: dict[str, list[tuple[torch.Tensor, int]]] = {"train": [], "val": [], "test": []}
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        name = "test" if index % 10 == 0 else "val" if index % 10 == 1 else "train"
        split[name].append((image, int(label)))
    return split
