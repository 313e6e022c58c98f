"""Keep freed CPU tensor memory inside the process, so training steps stop page-faulting it back in.

PyTorch's CPU allocator is plain ``malloc``. glibc's malloc serves large blocks with fresh ``mmap`` calls (above
``M_MMAP_THRESHOLD``, which adapts up to 32 MiB) and hands the free top of its heap back to the kernel (above
``M_TRIM_THRESHOLD``). A training step allocates its saved activations in forward and frees nearly all of them in
backward, so by default every step gives hundreds of MB back and then takes them again, one zero-filled 4 KiB page
fault at a time. Measured on the 2-core CPU box (``benchmarks/core.py`` shape, decoder, bf16-mixed): ~53,000 minor
faults per step (~208 MB) and 15-37 ms of kernel time in a 520-680 ms step; after ``keep_freed_memory()`` no faults
and 0-4 ms. Intel's PyTorch launcher swaps in jemalloc or tcmalloc for the same reason; setting two ``mallopt``
parameters gets the same effect without preloading a library.

The setting is process-wide and sticks (freed memory up to ``trim_threshold`` stays mapped, like a CUDA caching
allocator), so the library never applies it on import: the training layer's ``KeepFreedMemory`` callback does, for
CPU runs, as do the compare harness, the test session and the training benchmarks (for every contender alike).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

MIB = 1 << 20
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
INT_MAX = (1 << 31) - 1
MMAP_THRESHOLD, TRIM_THRESHOLD = 256 * MIB, 1024 * MIB  # the defaults, as measured in benchmarks/allocator.py
OLD_GLIBC_CAP = 32 * MIB  # older glibc refuses a larger M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)

_applied: tuple[int, int] | None = None  # (mmap_threshold, trim_threshold) as glibc took them, once set


def has_glibc_malloc() -> bool:
    """Whether glibc's malloc serves this process: Linux with glibc (not musl, macOS or Windows) and no other
    allocator preloaded (jemalloc, tcmalloc or mimalloc through ``LD_PRELOAD`` answer ``mallopt`` without effect)."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    other = any(name in preloaded for name in ("jemalloc", "tcmalloc", "mimalloc"))
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc" and not other


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Have glibc reuse freed tensor memory instead of returning it to the kernel; process-wide.

    Args:
        mmap_threshold: Blocks of at least this many bytes still get their own ``mmap`` (and go back to the
            kernel when freed); smaller ones come from the heap and are reused. Older glibc caps it at 32 MiB
            on 64-bit machines; a larger value is then lowered to that cap.
        trim_threshold: Free memory at the top of the heap is returned to the kernel only beyond this many bytes.

    Returns:
        ``True`` when the setting is in force, ``False`` where another allocator serves ``malloc`` or glibc refused
        the values; then nothing changed. Calling it again re-applies (two ``mallopt`` calls, harmless).
    """
    global _applied
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int number of bytes, got {type(value).__name__} {value!r}")
        if not 0 < value <= INT_MAX:
            raise ValueError(f"{name} must be in [1, {INT_MAX}] bytes (mallopt takes a C int), got {value}")
    if not has_glibc_malloc():
        return False
    libc = ctypes.CDLL(None)  # the running process's own symbols, glibc's mallopt among them
    accepted = mmap_threshold if libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) else 0
    if not accepted and mmap_threshold > OLD_GLIBC_CAP and libc.mallopt(M_MMAP_THRESHOLD, OLD_GLIBC_CAP):
        accepted = OLD_GLIBC_CAP
    if not accepted or not libc.mallopt(M_TRIM_THRESHOLD, trim_threshold):
        return False
    _applied = (accepted, trim_threshold)
    return True


def allocator_state() -> str:
    """One phrase for logs and benchmark headings: which CPU allocator behaviour this process runs with."""
    if _applied is None:
        return "malloc: system default"
    mmap_threshold, trim_threshold = _applied
    return (
        f"malloc: freed memory kept (glibc mmap threshold {mmap_threshold // MIB} MiB, "
        f"trim {trim_threshold // MIB} MiB)"
    )
