"""Download a file once into a cache directory, verify it, and fail clearly when offline."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from modal_tf.atomic import atomic_write

CACHE_ENV = "MODAL_TF_CACHE"


def cache_dir() -> Path:
    """``$MODAL_TF_CACHE`` or ``~/.cache/modal_tf``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "modal_tf"))


def _verify(path: Path, size: int | None, sha256: str | None) -> str | None:
    """None if ``path`` matches, else what is wrong."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual} bytes, expected {size}"
    if sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            return f"sha256 {digest}, expected {sha256}"
    return None


def fetch(url: str, filename: str, *, size: int | None = None, sha256: str | None = None, timeout: float = 30) -> Path:
    """The verified cached copy of ``url``, downloading it (atomically) if needed.

    Raises:
        ConnectionError: the download failed (offline?); the message says where to put the file by hand.
        ValueError: the downloaded or cached file fails verification.
    """
    path = cache_dir() / filename
    if path.is_file():
        problem = _verify(path, size, sha256)
        if problem is None:
            return path
        path.unlink()  # a truncated or stale copy; fetch it again
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            atomic_write(path, lambda stream: shutil.copyfileobj(response, stream))
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"could not download {url} ({error}); if this machine is offline, copy the file to {path} "
            f"or set {CACHE_ENV} to a folder that holds {filename}"
        ) from None
    problem = _verify(path, size, sha256)
    if problem is not None:
        path.unlink()
        raise ValueError(f"downloaded {url} has {problem}; the file was removed, try again")
    return path
