"""PrefetchingLoader receives worker batches on a thread: same batches, same order, same errors, clean restarts."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from modal_tf.datamodules import prefetch
from modal_tf.datamodules.prefetch import OVERRIDE, PrefetchingLoader, ThreadPrefetcher


def counting(limit: int, pulled: list[int], fail_at: int | None = None) -> Iterator[int]:
    for value in range(limit):
        if value == fail_at:
            raise KeyError(f"item {value} is broken")
        pulled.append(value)
        yield value


def test_yields_every_item_in_order_then_stops_for_good() -> None:
    prefetcher = ThreadPrefetcher(counting(50, []), depth=3)
    assert list(prefetcher) == list(range(50))
    with pytest.raises(StopIteration):
        next(prefetcher)


def test_an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    prefetcher = ThreadPrefetcher(counting(10, [], fail_at=4))
    assert [next(prefetcher) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="item 4 is broken"):
        next(prefetcher)
    with pytest.raises(StopIteration):
        next(prefetcher)


def test_close_stops_the_thread_and_it_never_advances_the_iterator_again() -> None:
    pulled: list[int] = []
    prefetcher = ThreadPrefetcher(counting(1000, pulled), depth=2)
    assert next(prefetcher) == 0
    prefetcher.close()
    assert not prefetcher._thread.is_alive()
    after_close = len(pulled)
    assert after_close <= 1 + 2 + 1  # the one consumed, a full queue, one waiting to be queued
    with pytest.raises(StopIteration):
        next(prefetcher)
    assert len(pulled) == after_close


def test_a_dropped_prefetcher_stops_its_thread_and_releases_the_iterator() -> None:
    pulled: list[int] = []
    source = counting(1000, pulled)
    prefetcher = ThreadPrefetcher(source, depth=2)
    assert next(prefetcher) == 0
    thread, alive = prefetcher._thread, weakref.ref(source)
    del prefetcher, source  # what a training loop that stops mid-epoch does with its iterator
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert alive() is None  # nothing holds the iterator (for a DataLoader: its worker processes) any more
    assert len(pulled) <= 4


def test_threads_still_running_at_exit_are_stopped_and_joined() -> None:
    prefetchers = [ThreadPrefetcher(counting(1000, []), depth=1) for _ in range(3)]
    threads = [prefetcher._thread for prefetcher in prefetchers]
    assert all(thread.is_alive() for thread in threads)
    prefetch._stop_all()  # what atexit runs before the interpreter finalizes
    assert not any(thread.is_alive() for thread in threads)
    assert not prefetch._LIVE


def test_a_process_that_exits_mid_epoch_exits_cleanly() -> None:
    script = """
import torch
from torch.utils.data import Dataset
from modal_tf.datamodules.prefetch import PrefetchingLoader

class Frames(Dataset):
    def __len__(self): return 1000
    def __getitem__(self, index): return torch.full((64, 64), float(index))

loader = PrefetchingLoader(Frames(), batch_size=8, num_workers=1, persistent_workers=True, prefetch_thread=True)
batches = iter(loader)
next(batches)
print("left mid-epoch")  # the prefetcher is still running when the interpreter finalizes
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "left mid-epoch" in done.stdout


@pytest.mark.parametrize("depth", [0, -1, 1.5, True])
def test_depth_must_be_a_positive_int(depth: object) -> None:
    with pytest.raises(ValueError, match="depth must be an int >= 1, got"):
        ThreadPrefetcher(iter([]), depth=depth)  # type: ignore[arg-type]


class Squares(Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((3,), float(index * index))


def test_worker_batches_match_a_plain_loader_and_a_restart_mid_epoch_is_clean() -> None:
    plain = [batch.clone() for batch in DataLoader(Squares(), batch_size=5)]
    loader = PrefetchingLoader(Squares(), batch_size=5, num_workers=1, persistent_workers=True, prefetch_thread=True)
    first = iter(loader)
    assert isinstance(first, ThreadPrefetcher)
    assert torch.equal(next(first), plain[0])  # abandon the epoch here, as a step limit does
    for _ in range(2):  # the persistent workers' one iterator is reset for each new epoch
        epoch = list(iter(loader))
        assert len(epoch) == len(plain)
        assert all(torch.equal(a, b) for a, b in zip(epoch, plain, strict=True))


def test_a_thread_only_when_asked_and_with_workers_unless_the_environment_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = PrefetchingLoader(Squares(), batch_size=5, num_workers=1, prefetch_thread=True)
    not_asked = PrefetchingLoader(Squares(), batch_size=5, num_workers=1)
    assert not isinstance(iter(not_asked), ThreadPrefetcher)
    assert not isinstance(iter(PrefetchingLoader(Squares(), batch_size=5, prefetch_thread=True)), ThreadPrefetcher)
    monkeypatch.setenv(OVERRIDE, "0")
    assert not isinstance(iter(asked), ThreadPrefetcher)
    assert len(list(asked)) == 5
    monkeypatch.setenv(OVERRIDE, "1")
    assert isinstance(iter(not_asked), ThreadPrefetcher)
    assert len(list(not_asked)) == 5


def test_the_audio_data_modules_receive_on_a_thread_and_the_others_do_not() -> None:
    from helpers import ReverseWords

    from modal_tf.datamodules.audio import KeypadKeys

    spec = {"name": "spectrogram", "sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "stack": 2}
    audio = KeypadKeys(num_train=8, num_eval=4, batch_size=4, num_workers=1, tokenizer=spec)
    text = ReverseWords(batch_size=4, num_workers=1)
    for module, threaded in ((audio, True), (text, False)):
        module.setup("fit")
        for loader in (module.train_dataloader(), module.val_dataloader()):
            batches = iter(loader)
            assert isinstance(batches, ThreadPrefetcher) == threaded
            assert len(list(batches)) == len(loader)
