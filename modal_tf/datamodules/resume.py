"""Exact mid-epoch resume: data order from ``(seed, epoch)`` and batches skipped from the step count.

Lightning restores weights, optimizer and loop counters, but a plain
DataLoader restarts its epoch from the first batch and the global RNG state is
not saved. Here the training order is a pure function of ``(seed, epoch)``
(``EpochSampler``), and ``ResumableLoader`` skips, at index level, the batches
of the current epoch that the restored ``global_step`` says were already
trained on. Deriving the skip from the step count (instead of saving a
"batches yielded" counter) is immune to the fetcher's prefetching and to
checkpoints taken at the very end of an epoch, where a saved counter would
either repeat or silently skip an epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from modal_tf.datamodules.prefetch import PrefetchingLoader


class EpochSampler(Sampler[int]):
    """Indices ``0..n-1`` in an order determined by ``(seed, epoch)`` alone (or in order, unshuffled).

    With ``tag_epoch``, each index is yielded as ``epoch * n + index``: a dataset that augments (e.g. SpecAugment)
    recovers ``(epoch, index) = divmod(key, n)`` and draws fresh, reproducible augmentations every epoch — also in
    persistent DataLoader workers, which never see attributes set on the main process's dataset later.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, tag_epoch: bool = False) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.tag_epoch = tag_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * self.size if self.tag_epoch else 0
        if not self.shuffle:
            return iter(range(offset, offset + self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter((torch.randperm(self.size, generator=generator) + offset).tolist())


class _SkipBatches:
    """A batch sampler that drops the first ``skip()`` batches but reports its full length.

    ``skip`` is evaluated lazily, when iteration really starts: Lightning creates the
    iterator before it calls ``set_epoch`` for the epoch being resumed.
    """

    def __init__(self, batch_sampler: Any, skip: Callable[[int], int]) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        yield from itertools.islice(iter(self.batch_sampler), self.skip(len(self.batch_sampler)), None)


class ResumableLoader(PrefetchingLoader):
    """A DataLoader that resumes mid-epoch (and receives worker batches on a thread, ``PrefetchingLoader``).

    Args:
        *args: DataLoader arguments (its sampler should order by ``(seed, epoch)``, e.g. ``EpochSampler``).
        batches_done: Returns how many optimizer-step batches were trained so far in total
            (``global_step * accumulate_grad_batches``), or None outside training.
        **kwargs: DataLoader keyword arguments.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int | None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done

    def _skip(self, per_epoch: int) -> int:
        done = self.batches_done() if self.batches_done is not None else None
        if not done:
            return 0
        epoch = int(getattr(self.sampler, "epoch", 0))
        skip = done - epoch * per_epoch
        return skip if 0 < skip <= per_epoch else 0

    @property
    def _index_sampler(self) -> Any:
        sampler = super()._index_sampler
        return _SkipBatches(sampler, self._skip) if getattr(self, "_iterating", False) else sampler

    def __iter__(self) -> Any:
        self._iterating = True  # only a new iterator skips; len() never does
        try:
            return super().__iter__()
        finally:
            self._iterating = False

    def state_dict(self) -> dict[str, Any]:
        """Marks the loader as resumable for Lightning; the position itself comes from ``global_step``."""
        return {"seed": getattr(self.sampler, "seed", None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refuse to resume with a different data order than the checkpoint was trained with."""
        seed = getattr(self.sampler, "seed", None)
        if state.get("seed") != seed:
            raise ValueError(f"checkpoint was trained with data seed {state.get('seed')}, this run uses {seed}")


def step_seed(seed: int, global_step: int, rank: int = 0) -> int:
    """The RNG seed of one training step, a pure function of ``(seed, global_step, rank)``."""
    return (seed * 1_000_003 + global_step * 7919 + rank * 104_729) % (2**63 - 1)
