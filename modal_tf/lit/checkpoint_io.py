"""Lightning CheckpointIO with atomic saves and ``weights_only=True`` loads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from modal_tf.checkpoints import load_checkpoint_file, save_checkpoint_file


class SafeCheckpointIO(TorchCheckpointIO):
    """Every checkpoint the Trainer writes or resumes from goes through ``modal_tf.checkpoints``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Atomic save (temp file, fsync, rename)."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable[..., Any] | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Load with ``weights_only=True`` whatever the caller asked."""
        return load_checkpoint_file(path, map_location)
