"""Byte-level BPE text tokenizer on Hugging Face ``tokenizers`` (the Rust library): trained here or loaded from a file.

Notation: T tokens, V vocabulary size (specials included).

Byte-level BPE (GPT-2, https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf
section 2.2) starts from all 256 byte values, so every string has an encoding (no unknown token) and decoding
the bytes back gives the text exactly. Merges come from BPE (Sennrich et al., https://arxiv.org/abs/1508.07909).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from torch import Tensor

from modal_tf.atomic import atomic_write_text
from modal_tf.tokenizers.base import DiscreteTokenizer, Tokens, enforce_max_length
from modal_tf.tokenizers.registry import register_tokenizer

SPECIALS = ("pad", "bos", "eos")
BPESelf = TypeVar("BPESelf", bound="BPETokenizer")


def _check_text(text: Any, argument: str) -> str:
    """Return ``text`` if it is a ``str`` of valid Unicode scalar values, else raise ``TypeError``/``ValueError``."""
    if not isinstance(text, str):
        raise TypeError(f"{argument} must be text of type str, got {type(text).__name__}")
    # isascii() is O(1) in CPython, so the common ASCII case skips the UTF-8 check entirely.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{argument} is not valid Unicode (lone surrogate at index {error.start})") from None
    return text


@register_tokenizer("bpe")
class BPETokenizer(DiscreteTokenizer):
    """Byte-level BPE on Hugging Face ``tokenizers``: lossless on any valid Unicode text. Axis ``time``.

    Either ``fit`` trains a fresh tokenizer (specials pad/bos/eos get ids 0, 1, 2, then the 256 bytes, then
    merges), or ``tokenizer_file`` loads an existing ``tokenizer.json`` (e.g. GPT-2's) and uses it unchanged,
    except that specials named ``pad_token``/``bos_token``/``eos_token`` that the file lacks are appended, in
    that order, at the end of the vocabulary. Special-token text inside the input (``"<eos>"``) is encoded as plain
    text, never as the special id, so decoding gives it back.

    Args:
        vocab_size: Vocabulary size ``fit`` aims for (specials and the 256 bytes included); a small corpus
            may yield fewer merges. Ignored when ``tokenizer_file`` is given.
        max_length: Longest encoding in tokens, or None for no limit.
        truncate: Over-long text is cut to ``max_length`` tokens with a warning (True) or rejected with
            ``ValueError`` (False, the default).
        tokenizer_file: Path of a Hugging Face ``tokenizer.json`` to load instead of fitting.
        pad_token: Name of the padding token.
        bos_token: Name of the beginning-of-sequence token.
        eos_token: Name of the end-of-sequence token.
    """

    axes = ("time",)

    def __init__(
        self,
        vocab_size: int = 4096,
        max_length: int | None = None,
        truncate: bool = False,
        tokenizer_file: str | os.PathLike[str] | None = None,
        pad_token: str = "<pad>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
    ) -> None:
        # type() is int, not isinstance: a bool is an int but never a meant size.
        if type(vocab_size) is not int or vocab_size < 259:
            raise ValueError(f"vocab_size must be an int >= 259 (256 bytes + 3 specials), got {vocab_size!r}")
        if max_length is not None and (type(max_length) is not int or max_length < 1):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        if not isinstance(truncate, bool):
            raise TypeError(f"truncate must be a bool, got {type(truncate).__name__}")
        names = (pad_token, bos_token, eos_token)
        for kind, name in zip(SPECIALS, names, strict=True):
            if not isinstance(name, str) or not name:
                raise ValueError(f"{kind}_token must be a non-empty str, got {name!r}")
        if len(set(names)) != 3:
            # One shared id breaks generation: bos is banned from sampling (non_content_ids), so eos would be too.
            raise ValueError(f"pad_token, bos_token and eos_token must differ, got {names}")
        if tokenizer_file is not None and not isinstance(tokenizer_file, str | os.PathLike):
            raise TypeError(
                f"tokenizer_file must be a path (str or os.PathLike) or None, got {type(tokenizer_file).__name__}"
            )
        self.vocab_target = vocab_size
        self.max_length = max_length
        self.truncate = truncate
        self.tokenizer_file = None if tokenizer_file is None else os.fspath(tokenizer_file)
        self.special_tokens = names
        self._tokenizer: HFTokenizer | None = None
        self._ids = (0, 0, 0)  # pad, bos, eos ids; set by _install
        self._size = 0
        if self.tokenizer_file is not None:
            self._install(self._read_file(self.tokenizer_file))

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        names = {f"{kind}_token": name for kind, name in zip(SPECIALS, self.special_tokens, strict=True)}
        options = {"max_length": self.max_length, "truncate": self.truncate, "tokenizer_file": self.tokenizer_file}
        return {"vocab_size": self.vocab_target, **options, **names}

    @property
    def requires_fit(self) -> bool:
        """True until ``fit`` ran or a tokenizer was loaded."""
        return self._tokenizer is None

    def fitted_state(self) -> dict[str, Any]:
        """The Hugging Face tokenizer as its JSON string (``{}`` before fitting)."""
        return {} if self._tokenizer is None else {"tokenizer_json": self._tokenizer.to_str()}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore the tokenizer from ``fitted_state()`` output; ``{}`` leaves it as it is."""
        if not state:
            return
        text = state.get("tokenizer_json")
        if not isinstance(text, str):
            raise ValueError(f"fitted state must hold a str 'tokenizer_json', got keys {sorted(state)}")
        self._install(self._parse(text, "fitted state 'tokenizer_json'"))

    @classmethod
    def from_state_dict(cls: type[BPESelf], state: dict[str, Any]) -> BPESelf:
        """Rebuild from ``state_dict()``; the fitted state holds the file's contents, so the path is not reread."""
        if isinstance(state, dict) and isinstance(state.get("config"), dict) and state.get("fitted"):
            state = {**state, "config": {**state["config"], "tokenizer_file": None}}
        return super().from_state_dict(state)

    def __getstate__(self) -> dict[str, Any]:
        # Go through the JSON string: HF's own pickling drops the encode_special_tokens flag set by _install.
        state = self.__dict__.copy()
        state["_tokenizer"] = None if self._tokenizer is None else self._tokenizer.to_str()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        text = state.pop("_tokenizer")
        self.__dict__.update(state, _tokenizer=None)
        if text is not None:
            self._install(HFTokenizer.from_str(text))

    def save_hf(self, path: str | os.PathLike[str]) -> None:
        """Write a standard Hugging Face ``tokenizer.json`` (loadable by ``tokenizer_file=`` or HF itself)."""
        atomic_write_text(path, self._fitted().to_str(pretty=True))

    def fit(self, samples: Iterable[str]) -> None:
        """Train a fresh byte-level BPE on ``samples`` (replacing any loaded tokenizer); deterministic."""
        if isinstance(samples, str) or not isinstance(samples, Iterable):
            raise TypeError(f"samples must be an iterable of str, got {type(samples).__name__}")
        checked = (_check_text(sample, f"samples[{index}]") for index, sample in enumerate(samples))
        tokenizer = HFTokenizer(models.BPE())
        # use_regex splits GPT-2 style (letters, digits, punctuation, spaces apart), so merges never cross words;
        # no prefix space, so decode(encode(s)) == s byte for byte.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_target,
            special_tokens=list(self.special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknown token, ever
            show_progress=False,
        )
        tokenizer.train_from_iterator(checked, trainer=trainer)
        self._install(tokenizer)

    @staticmethod
    def _parse(text: str, source: str) -> HFTokenizer:
        try:
            return HFTokenizer.from_str(text)
        except Exception as error:  # the Rust binding raises a bare Exception for every parse failure
            raise ValueError(f"{source} is not a valid Hugging Face tokenizer.json: {error}") from None

    @classmethod
    def _read_file(cls, path: str) -> HFTokenizer:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"tokenizer_file not found: {file}")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"tokenizer_file {file} is not UTF-8 text: {error}") from None
        return cls._parse(text, f"tokenizer_file {file}")

    def _install(self, tokenizer: HFTokenizer) -> None:
        """Adopt ``tokenizer``: add missing specials, resolve their ids and the vocabulary size."""
        missing = [name for name in self.special_tokens if tokenizer.token_to_id(name) is None]
        if missing:
            tokenizer.add_special_tokens(missing)
        # Match special-token text in the input as ordinary text: "<eos>" in a document must round-trip.
        tokenizer.encode_special_tokens = True
        ids = tuple(tokenizer.token_to_id(name) for name in self.special_tokens)
        if any(id_ is None for id_ in ids):
            raise ValueError(f"tokenizer did not accept special tokens {self.special_tokens} (got ids {ids})")
        self._ids = ids  # type: ignore[assignment]  # None excluded just above
        # Largest id + 1, not len(vocab): a foreign file may leave holes in its id range.
        self._size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        self._tokenizer = tokenizer

    def _fitted(self) -> HFTokenizer:
        if self._tokenizer is None:
            raise RuntimeError("BPETokenizer is not fitted: call fit() first or load a tokenizer file")
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        """V: the largest id + 1, specials included."""
        self._fitted()
        return self._size

    def _special_id(self, index: int) -> int:
        self._fitted()
        return self._ids[index]

    @property
    def pad_id(self) -> int:
        """Id of ``pad_token``."""
        return self._special_id(0)

    @property
    def bos_id(self) -> int:
        """Id of ``bos_token``."""
        return self._special_id(1)

    @property
    def eos_id(self) -> int:
        """Id of ``eos_token``."""
        return self._special_id(2)

    def _tokens(self, ids: list[int]) -> Tokens:
        ids = enforce_max_length(ids, self.max_length, self.truncate, "tokens", stacklevel=3)
        # numpy converts a list of ints ~3x faster than torch.tensor, which matters at ~1 µs per token.
        values = torch.from_numpy(np.asarray(ids, dtype=np.int64))  # (T,)
        return Tokens(values, torch.arange(values.shape[0])[:, None])  # coords (T, 1)

    def encode(self, raw: Any) -> Tokens:
        """Encode a ``str`` to ``(T,)`` ids with ``(T, 1)`` time coordinates; no bos/eos added."""
        tokenizer = self._fitted()
        text = _check_text(raw, "text")
        return self._tokens(tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[Tokens]:
        """Encode many texts at once (in parallel Rust threads); same output as ``encode`` on each."""
        tokenizer = self._fitted()
        if not isinstance(texts, list | tuple):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        for index, text in enumerate(texts):
            _check_text(text, f"texts[{index}]")
        return [self._tokens(encoding.ids) for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids back to text; specials are dropped; invalid UTF-8 (from sampling) becomes U+FFFD."""
        tokenizer = self._fitted()
        values = self.check_ids(ids)
        specials = set(self._ids)
        return tokenizer.decode([value for value in values if value not in specials], skip_special_tokens=True)
