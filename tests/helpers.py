"""Small builders shared by tests."""

from __future__ import annotations

import pytest
import torch

from modal_tf.core import cpu_support
from modal_tf.tokenizers import ByteTokenizer, TokenBatch, Tokens


def text_batch(texts: list[str], tokenizer: ByteTokenizer | None = None) -> TokenBatch:
    """Right-padded batch of byte-encoded texts."""
    tokenizer = tokenizer or ByteTokenizer()
    return tokenizer.collate([tokenizer.encode(text) for text in texts])


def prompt_batch(prompts: list[list[int]]) -> TokenBatch:
    """Right-padded batch of id prompts with 1-D time coordinates."""
    tokens = [Tokens(torch.tensor(ids), torch.arange(len(ids))[:, None]) for ids in prompts]
    return ByteTokenizer().collate(tokens)


def reverse_samples(count: int, seed: int) -> list[dict[str, object]]:
    """Seq2seq toy samples: a random lowercase word and its reverse."""
    import random

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdef") for _ in range(rng.randint(1, 6))) for _ in range(count)]
    return [{"inputs": {"text": word}, "target": word[::-1]} for word in words]


def make_reverse_datamodule() -> type:
    """A tiny seq2seq DataModule (defined lazily so importing helpers stays Lightning-free)."""
    from modal_tf.datamodules import ModalDataModule
    from modal_tf.task import TaskSpec

    class ReverseWords(ModalDataModule):
        """Reverse a short word (test-only seq2seq task)."""

        def build_splits(self) -> dict[str, list[dict[str, object]]]:
            return {"train": reverse_samples(64, 0), "val": reverse_samples(16, 1), "test": reverse_samples(16, 2)}

        def build_task(self) -> TaskSpec:
            return TaskSpec({"text": ByteTokenizer()}, target=ByteTokenizer())

    return ReverseWords


ReverseWords = make_reverse_datamodule()


def make_kill_callback() -> type:
    """A callback that SIGKILLs its own process after a given number of training batches."""
    import os
    import signal

    from lightning.pytorch.callbacks import Callback

    class KillAfter(Callback):
        """Simulates a crash: no cleanup, no final checkpoint."""

        def __init__(self, batches: int) -> None:
            self.batches = batches

        def on_train_batch_end(self, trainer: object, pl_module: object, *args: object) -> None:
            if getattr(pl_module, "batches_trained", 0) >= self.batches:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfter


KillAfter = make_kill_callback()


def make_poison_callback() -> type:
    """A callback that turns one weight NaN before a given training batch (to test non-finite handling)."""
    import torch
    from lightning.pytorch.callbacks import Callback

    class PoisonAt(Callback):
        def __init__(self, batch: int) -> None:
            self.batch = batch

        def on_train_batch_start(self, trainer: object, pl_module: object, batch: object, batch_idx: int) -> None:
            if batch_idx == self.batch:
                with torch.no_grad():
                    next(pl_module.net.parameters()).fill_(float("nan"))  # type: ignore[attr-defined]

    return PoisonAt


PoisonAt = make_poison_callback()


def pin_reduced_precision_kernels(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """Make every reader of ``fast_cpu_matmul`` (attention dispatch, emulation, precision warning) see a CPU with
    (``fast``) or without fast bf16/fp16 kernels, whatever this machine has.

    Compiled graphs take the probe's answer as a constant, so they are dropped first (the fixtures
    ``fast_reduced_precision`` and ``slow_reduced_precision`` drop them again afterwards).
    """
    torch._dynamo.reset()
    monkeypatch.setattr(cpu_support, "_onednn_supports", lambda dtype: fast)
