"""The comparison's data: loaded once, then handed to every run through ``ImageClassification``.

``ImageClassification`` ties scene generation to its ``seed``; a comparison needs the *same*
validation and test images for every seed, so the splits are built once with ``data_seed`` and
each run only takes its seeded training subset (``subsample``, as ``train_fraction`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modal_tf.compare.config import DataSettings
from modal_tf.data.image_sources import ImageSplits
from modal_tf.datamodules.base import Collator, EncodedDataset
from modal_tf.datamodules.vision import ImageClassification, subsample


@dataclass(frozen=True)
class PreparedData:
    """Images of every split, loaded once.

    Attributes:
        splits: ``{"train"|"val"|"test": [(image (C, H, W) uint8, label), ...]}``.
        class_names: Label names.
        image_size: ``(H, W)`` of the images (all images of a source share it).
        channels: C.
        patch_size: Side of the shared patch tokenizer.
    """

    splits: ImageSplits
    class_names: list[str]
    image_size: tuple[int, int]
    channels: int
    patch_size: int

    @property
    def tokenizer(self) -> dict[str, Any]:
        """The patch tokenizer spec shared by every model (statistics fitted on each run's training subset)."""
        return {"name": "patch", "patch_size": self.patch_size, "channels": self.channels}


def prepare_data(settings: DataSettings) -> PreparedData:
    """Load or generate ``settings.source`` once.

    Raises:
        ValueError: images of different sizes, or a patch size that does not tile them.
    """
    loader = ImageClassification(
        source=settings.source, num_train=settings.num_train, num_eval=settings.num_eval, seed=settings.data_seed
    )
    splits = loader.image_splits()
    sizes = {tuple(image.shape) for items in splits.values() for image, _ in items}
    if len(sizes) != 1:
        raise ValueError(f"data.source {settings.source!r}: images must share one size to compare models, got {sizes}")
    channels, height, width = next(iter(sizes))
    patch_size = settings.patch_size or (2 if max(height, width) <= 16 else 4)
    if height % patch_size or width % patch_size:
        raise ValueError(f"data.patch_size {patch_size} must divide the image size {height}x{width}")
    return PreparedData(splits, list(loader.class_names), (height, width), channels, patch_size)


class PreparedImages(ImageClassification):
    """``ImageClassification`` over ``PreparedData``: a seeded ``train_fraction`` of the training split.

    Args:
        data: The comparison's images.
        train_fraction: Fraction of the training split this run sees.
        batch_size: Images per batch.
        seed: Subsampling and shuffling seed.
    """

    def __init__(self, data: PreparedData, train_fraction: float, batch_size: int, seed: int) -> None:
        super().__init__(
            source="prepared",
            train_fraction=train_fraction,
            tokenizer=data.tokenizer,
            batch_size=batch_size,
            seed=seed,
        )
        self.data = data

    def image_splits(self) -> ImageSplits:
        """The prepared splits, training split subsampled; sets ``class_names``."""
        self.class_names = list(self.data.class_names)
        splits = dict(self.data.splits)
        splits["train"] = subsample(splits["train"], self.train_fraction, self.seed)
        return splits

    def sample_batch(self, size: int) -> dict[str, Any]:
        """``size`` test images (cycled if the split is smaller) collated like training batches, for measurements."""
        if self.task is None:
            raise RuntimeError("PreparedImages.setup() must run before sample_batch()")
        tests = self.data.splits["test"]
        samples = [{"inputs": {"image": tests[index % len(tests)][0]}, "label": 0} for index in range(size)]
        dataset = EncodedDataset(samples, self.task)
        return Collator(self.task)([dataset[index] for index in range(size)])
