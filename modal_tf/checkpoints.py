"""Safe checkpoint files: atomic writes, ``weights_only=True`` reads, clear errors.

No pickle code from a checkpoint ever runs: ``torch.load(weights_only=True)``
only rebuilds tensors and plain containers, which is why every
hyper-parameter and tokenizer state we store is a plain type.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from modal_tf.atomic import atomic_write


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file, fsync, rename: a kill mid-save leaves the old file intact."""
    atomic_write(path, lambda stream: torch.save(checkpoint, stream))


def load_checkpoint_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt, or holds objects other than tensors and plain types
            (a crafted pickle is refused before any of its code runs).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refusing to load {path}: it holds objects that are not tensors or plain types, and loading them "
            f"would run code from the file (torch.load weights_only=True said: {str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"checkpoint {path} is corrupt or truncated: {str(error).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {path} must hold a dict, got {type(checkpoint).__name__}")
    return checkpoint
