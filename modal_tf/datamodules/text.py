"""Text recipes' data: the order task, language modelling, seq2seq pairs and classification.

Every DataModule runs offline on embedded data by default and takes users'
files (or TinyShakespeare, downloaded once) through ``source``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from modal_tf.data import numbers, pydoc_corpus, text_files
from modal_tf.data.who_did_it import NAMES, who_did_it_samples
from modal_tf.datamodules.base import ModalDataModule, Sample, require_discrete, seeded_splits
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import Tokens, tokenizer_from_spec


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"data.{name} must be >= 1, got {value}")


def split_fractions(items: list[Any], val: float = 0.05, test: float = 0.05) -> dict[str, list[Any]]:
    """Contiguous train/val/test split (last ``val + test`` of the items held out, in order)."""
    count = len(items)
    n_test, n_val = max(1, int(count * test)), max(1, int(count * val))
    if count < n_test + n_val + 1:
        raise ValueError(f"need at least {n_test + n_val + 1} items to split, got {count}")
    return {
        "train": items[: count - n_val - n_test],
        "val": items[count - n_val - n_test : count - n_test],
        "test": items[count - n_test :],
    }


class WhoDidIt(ModalDataModule):
    """Order-sensitivity classification: who acted, Tom or Jerry? Generated offline, seeded.

    Args:
        num_train: Training sentences.
        num_val: Validation sentences.
        num_test: Test sentences.
        tokenizer: ``{"name": registry name, **constructor arguments}`` of the text tokenizer.
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        seed: Seed of generation (each split has its own stream) and shuffling.
    """

    def __init__(
        self,
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 1000,
        tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_sizes(num_train=num_train, num_val=num_val, num_test=num_test)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.tokenizer_spec = dict(tokenizer or {"name": "bytes"})

    def build_splits(self) -> dict[str, list[Sample]]:
        """Three independently seeded splits."""
        return seeded_splits(
            self.sizes,
            self.seed,
            lambda size, seed: [
                {"inputs": {"text": text}, "label": label} for text, label in who_did_it_samples(size, seed)
            ],
        )

    def build_task(self) -> TaskSpec:
        """One text input; the classes are the two names."""
        return TaskSpec({"text": tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer")}, class_names=list(NAMES))


class WindowDataset(Dataset[dict[str, Any]]):
    """Consecutive ``block_size + 1``-token windows of one token stream (a plain LM has no inputs)."""

    def __init__(self, ids: torch.Tensor, block_size: int) -> None:
        self.ids = ids
        self.block_size = block_size
        self.count = max(0, (ids.shape[0] - 1) // block_size)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        start = index * self.block_size
        window = self.ids[start : start + self.block_size + 1]
        return {"inputs": {}, "target": Tokens(window, torch.arange(window.shape[0])[:, None])}


class TextLM(ModalDataModule):
    """Language modelling on a text corpus, as consecutive token windows.

    Args:
        source: ``pydoc`` (the embedded Python reference, split by topic), ``tinyshakespeare``
            (downloaded once; last 5 % val, 5 % test by characters) or a glob/folder of ``.txt`` files
            (split by file order the same way; one file is split by characters).
        block_size: Tokens the model predicts per window.
        tokenizer: ``{"name": ..., **arguments}``; fitted on the training split only.
        batch_size: Windows per batch.
        num_workers: DataLoader workers.
        seed: Shuffling seed.
    """

    def __init__(
        self,
        source: str = "pydoc",
        block_size: int = 256,
        tokenizer: dict[str, Any] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_sizes(block_size=block_size)
        self.source = source
        self.block_size = block_size
        self.tokenizer_spec = dict(tokenizer or {"name": "bpe", "vocab_size": 2048})
        self.streams: dict[str, torch.Tensor] = {}
        self.bytes_per_token: dict[str, float] = {}

    def _texts(self) -> dict[str, list[str]]:
        if self.source == "pydoc":
            return {split: [pydoc_corpus.corpus_text(split)] for split in ("train", "val", "test")}
        if self.source == "tinyshakespeare":
            texts = [text_files.tiny_shakespeare()]
        else:
            texts = text_files.read_text_files(self.source)
        if len(texts) >= 3:
            return split_fractions(texts)
        characters = split_fractions(list("\n\n".join(texts)))
        return {split: ["".join(part)] for split, part in characters.items()}

    def build_splits(self) -> dict[str, list[Sample]]:
        """One sample per document; windows are cut after tokenization."""
        return {split: [{"inputs": {}, "target": text} for text in texts] for split, texts in self._texts().items()}

    def build_task(self) -> TaskSpec:
        """No inputs; the target tokenizer is the LM's vocabulary."""
        return TaskSpec(
            {}, target=require_discrete(tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer"), "data.tokenizer")
        )

    def make_dataset(self, split: str) -> Dataset[dict[str, Any]]:
        """Windows over the split's token stream (tokenized once)."""
        if self.splits is None or self.task is None or self.task.target is None:
            raise RuntimeError("setup() must run first")
        if split not in self.streams:
            texts = [sample["target"] for sample in self.splits[split]]
            ids = torch.cat([self.task.target.encode(text).values for text in texts])
            self.streams[split] = ids
            self.bytes_per_token[split] = sum(len(text.encode("utf-8")) for text in texts) / max(1, ids.shape[0])
        dataset = WindowDataset(self.streams[split], self.block_size)
        if len(dataset) == 0:
            raise ValueError(f"the {split} split has {self.streams[split].shape[0]} tokens, fewer than block_size + 1")
        return dataset


class TextPairs(ModalDataModule):
    """Seq2seq on text pairs: English number words to Chinese numerals, or a user's TSV.

    Args:
        source: ``numbers_zh`` (generated offline) or the path of a ``source<TAB>target`` TSV
            (split 90/5/5 in file order).
        num_train: Generated training pairs (``numbers_zh`` only; val/test get ``num_eval`` each).
        num_eval: Generated validation and test pairs each.
        max_number: Largest generated number.
        source_tokenizer: Tokenizer of the source text.
        target_tokenizer: Tokenizer of the target text (discrete).
        batch_size: Pairs per batch.
        num_workers: DataLoader workers.
        seed: Generation and shuffling seed.
    """

    def __init__(
        self,
        source: str = "numbers_zh",
        num_train: int = 20000,
        num_eval: int = 500,
        max_number: int = 999_999,
        source_tokenizer: dict[str, Any] | None = None,
        target_tokenizer: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_sizes(num_train=num_train, num_eval=num_eval)
        self.source = source
        self.sizes = {"train": num_train, "val": num_eval, "test": num_eval}
        self.max_number = max_number
        self.source_spec = dict(source_tokenizer or {"name": "bytes"})
        self.target_spec = dict(target_tokenizer or {"name": "bytes"})

    def build_splits(self) -> dict[str, list[Sample]]:
        """Generated pairs (disjoint seeds per split; test numbers are excluded from train) or the TSV."""
        if self.source == "numbers_zh":
            held_out = {
                split: numbers.number_pairs(self.sizes[split], self.seed * 1000 + offset, self.max_number)
                for offset, split in ((1, "val"), (2, "test"))
            }
            seen = {pair[0] for pairs in held_out.values() for pair in pairs}
            train = [
                pair
                for pair in numbers.number_pairs(self.sizes["train"], self.seed * 1000, self.max_number)
                if pair[0] not in seen
            ]
            pairs = {"train": train, **held_out}
        else:
            pairs = split_fractions(text_files.read_pairs_tsv(self.source))
        return {split: [{"inputs": {"text": a}, "target": b} for a, b in items] for split, items in pairs.items()}

    def build_task(self) -> TaskSpec:
        """Source text in, target text out."""
        target = require_discrete(
            tokenizer_from_spec(self.target_spec, "data.target_tokenizer"), "data.target_tokenizer"
        )
        return TaskSpec({"text": tokenizer_from_spec(self.source_spec, "data.source_tokenizer")}, target=target)


class TextClassification(ModalDataModule):
    """Which topic group of the Python reference a paragraph comes from, or a user's labelled CSV.

    Args:
        source: ``pydoc_topics`` (embedded; 5 groups, paragraphs split by hash) or a CSV path with
            ``text`` and ``label`` columns (split 90/5/5 in file order; classes sorted by name).
        max_chars: Paragraphs are cut to this many characters.
        tokenizer: ``{"name": ..., **arguments}``; fitted on the training split only.
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        seed: Shuffling seed.
    """

    def __init__(
        self,
        source: str = "pydoc_topics",
        max_chars: int = 400,
        tokenizer: dict[str, Any] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        _check_sizes(max_chars=max_chars)
        self.source = source
        self.max_chars = max_chars
        self.tokenizer_spec = dict(tokenizer or {"name": "bpe", "vocab_size": 1024})
        self.class_names: list[str] = []

    def build_splits(self) -> dict[str, list[Sample]]:
        """Labelled paragraphs per split."""
        if self.source == "pydoc_topics":
            self.class_names = list(pydoc_corpus.GROUPS)
            rows = pydoc_corpus.paragraph_samples(self.max_chars)
        else:
            table = text_files.read_labelled_csv(self.source)
            self.class_names = sorted({label for _, label in table})
            rows = split_fractions([(text[: self.max_chars], self.class_names.index(label)) for text, label in table])
        return {
            split: [{"inputs": {"text": text}, "label": label} for text, label in items]
            for split, items in rows.items()
        }

    def build_task(self) -> TaskSpec:
        """One text input; the classes found in the data."""
        if not self.class_names:
            raise RuntimeError("build_splits() must run before build_task()")
        return TaskSpec(
            {"text": tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer")}, class_names=self.class_names
        )


def majority_accuracy(train: list[Sample], test: list[Sample]) -> float:
    """Accuracy of always predicting the most frequent training label (a baseline)."""
    labels = [sample["label"] for sample in train]
    majority = max(set(labels), key=labels.count)
    return sum(sample["label"] == majority for sample in test) / len(test)


def bits_per_byte(loss_nats_per_token: float, bytes_per_token: float) -> float:
    """Convert a mean next-token cross-entropy (nats) into bits per byte of text."""
    return loss_nats_per_token / math.log(2) / bytes_per_token
