"""Batches from DataLoader workers received on a thread of the main process, while the model computes (opt-in).

A worker hands each tensor of a batch over as shared memory: with torch.multiprocessing's default
``file_descriptor`` strategy, one file descriptor per tensor, each fetched over a new connection to the worker's
resource-sharer thread. Receiving one batch of four tensors took 2-3 ms on the 2-core CPU box, all of it on the
training loop's path: ~10 % of a 26 ms step of ``audio/encoder_classify_keys``. ``PrefetchingLoader`` can receive
the next batches on a background thread instead; the model's kernels release the GIL, so the receiving overlaps the
step, and taking a received batch measured 0.2 ms. It is opt-in, like DataLoader's ``pin_memory`` thread (which
works the same way, but only when there is an accelerator to pin for): the thread's Python work still contends with
the training loop's for the GIL. Whole runs (``benchmarks/prefetch.py``, two runs, reduced differently): 1.10x and
1.22x faster with it on the audio keys recipe (4-tensor batches, 30 ms steps; the wait it hides is worth ~1.09x,
the rest of the second figure is the VM drifting); 0.94x and 1.11x on ``robot/decoder_bc``, whose data wait fell by
5 points both times while its step time moved either way — not settled, so only the audio DataModules turn it on.
Without workers there is nothing to receive, so no thread is started. ``MODAL_TF_PREFETCH=1`` turns the thread on
for every loader with workers, ``MODAL_TF_PREFETCH=0`` off for all (how the benchmark compares the two).
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

DEPTH = 2  # batches received ahead of the training loop, on top of the workers' own prefetch
OVERRIDE = "MODAL_TF_PREFETCH"  # "1" / "0": a thread for every loader with workers / for none, whatever it asked


_LIVE: set[tuple[threading.Event, threading.Thread]] = set()  # every running prefetch thread and its stop flag


@atexit.register
def _stop_all(timeout: float = 5.0) -> None:
    """Stop and join every prefetch thread before the interpreter finalizes.

    A daemon thread still inside torch's C++ code when Python finalizes is unwound by ``pthread_exit`` as it
    reaches for the GIL, and a ``noexcept`` frame on the way aborts the process ("terminate called without an
    active exception"), e.g. after ``fit`` stopped mid-epoch and left a prefetcher waiting for its consumer.
    """
    running = list(_LIVE)
    for stop, _ in running:
        stop.set()
    for _, thread in running:
        thread.join(timeout)


def _pull(iterator: Iterator[Any], ready: queue.Queue[tuple[bool, Any]], stop: threading.Event) -> None:
    """Thread body: queue ``(True, item)`` per item, then ``(False, None)`` at the end or ``(False, error)``.

    It holds only the iterator, the queue and the stop flag, never the ``ThreadPrefetcher``, so dropping the
    prefetcher (an abandoned epoch) stops the thread, which then drops the iterator and with it the workers.
    """

    def hand_over(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    entry = (stop, threading.current_thread())
    _LIVE.add(entry)
    try:
        for item in iterator:
            if not hand_over((True, item)):
                return
        hand_over((False, None))
    except BaseException as error:  # re-raised in the consuming thread, traceback and all
        hand_over((False, error))
    finally:
        _LIVE.discard(entry)


class ThreadPrefetcher(Iterator[Any]):
    """Iterates ``iterator`` on a daemon thread, ``depth`` items ahead; same items, same order, same errors.

    Args:
        iterator: Any iterator; only the thread advances it until ``close`` (or until this object is dropped).
        depth: Items the thread may hold ready (>= 1).
    """

    def __init__(self, iterator: Iterator[Any], depth: int = DEPTH) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        self._ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=_pull, args=(iterator, self._ready, self._stop), name="modal_tf-prefetch", daemon=True
        )
        self._thread.start()

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        is_item, value = self._ready.get()
        if is_item:
            return value
        self._finished = True
        self._thread.join()
        if value is None:
            raise StopIteration
        raise value

    def close(self) -> None:
        """Stop the thread and wait for it; after this, only the caller touches the wrapped iterator again."""
        self._stop.set()
        self._finished = True
        self._thread.join()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)  # absent when __init__ refused its arguments
        if stop is not None:
            stop.set()  # no join: the thread may be waiting for a worker's batch; it stops right after


class PrefetchingLoader(DataLoader[Any]):
    """A DataLoader whose iterator can receive worker batches on a ``ThreadPrefetcher``.

    Args:
        *args: DataLoader arguments.
        prefetch_thread: Receive on a thread (only with ``num_workers``; ``MODAL_TF_PREFETCH`` overrides it).
        **kwargs: DataLoader keyword arguments.

    A new ``iter()`` first stops the previous prefetcher if it is still in use: with persistent workers,
    DataLoader resets and reuses one worker iterator for every epoch, which two threads must never advance at
    once. The loader keeps only a weak reference, so an iterator its consumer dropped stops on its own.
    """

    _prefetcher: weakref.ref[ThreadPrefetcher] | None = None

    def __init__(self, *args: Any, prefetch_thread: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefetch_thread = prefetch_thread

    def __iter__(self) -> Any:
        previous = self._prefetcher() if self._prefetcher is not None else None
        if previous is not None:
            previous.close()
        iterator = super().__iter__()
        wanted = {"1": True, "0": False}.get(os.environ.get(OVERRIDE, ""), self.prefetch_thread)
        if not wanted or self.num_workers == 0:
            return iterator
        prefetcher = ThreadPrefetcher(iterator)
        self._prefetcher = weakref.ref(prefetcher)
        return prefetcher
