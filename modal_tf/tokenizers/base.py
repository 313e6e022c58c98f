"""The tokenizer plugin contract.

Notation: T tokens, F feature width, A coordinate axes, D model dim.

A tokenizer is data-side and parameter-free: it runs in DataLoader workers,
pickles, and serializes to JSON. It turns one raw sample into ``Tokens``:
values (integer ids ``(T,)`` or float feature frames ``(T, F)``) and integer
coordinates ``(T, A)`` along its declared ``axes``. The ``nn.Module`` that
maps those values to ``(B, T, D)`` is built by ``tokenizer.embedding(dim)``.
"""

from __future__ import annotations

import json
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from modal_tf.atomic import atomic_write_text
from modal_tf.core.emulation import Linear

STATE_FORMAT = 1
Self = TypeVar("Self", bound="Tokenizer")
Seq = TypeVar("Seq", bytes, list[int])


class Tokens(NamedTuple):
    """One encoded sample: ``values`` ``(T,)`` int64 ids or ``(T, F)`` float; ``coords`` ``(T, A)`` int64."""

    values: Tensor
    coords: Tensor


class TokenBatch(NamedTuple):
    """Padded batch: ``values`` ``(B, T)`` or ``(B, T, F)``; ``coords`` ``(B, T, A)``; ``valid`` ``(B, T)`` bool."""

    values: Tensor
    coords: Tensor
    valid: Tensor

    def to(self, device: torch.device | str) -> TokenBatch:
        """The same batch with every tensor on ``device``."""
        return TokenBatch(self.values.to(device), self.coords.to(device), self.valid.to(device))


class Tokenizer(ABC):
    """Base of every tokenizer plugin.

    Subclasses set ``axes``, implement ``encode``, ``embedding`` and ``config``,
    and, when they learn something from data, ``fit`` / ``fitted_state`` /
    ``load_fitted_state``. ``registry_name`` is set by ``@register_tokenizer``.
    """

    registry_name: ClassVar[str] = ""
    axes: tuple[str, ...] = ("time",)

    @abstractmethod
    def encode(self, raw: Any) -> Tokens:
        """Turn one raw sample into ``Tokens``; raise ``TypeError``/``ValueError`` on bad input."""

    @abstractmethod
    def embedding(self, dim: int) -> nn.Module:
        """The module mapping this tokenizer's batched values to ``(B, T, dim)``."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON types only) that rebuild this tokenizer unfitted."""

    @property
    @abstractmethod
    def pad_value(self) -> int | float:
        """Value used to pad ``values`` in a batch."""

    @property
    def requires_fit(self) -> bool:
        """Whether ``fit`` must run before ``encode``."""
        return False

    def fit(self, samples: Iterable[Any]) -> None:  # noqa: B027 - a no-op default is the contract
        """Learn vocabulary or statistics from training samples (default: nothing to learn)."""

    def fitted_state(self) -> dict[str, Any]:
        """What ``fit`` learned, as JSON types."""
        return {}

    def load_fitted_state(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what ``fit`` learned from ``fitted_state()`` output."""

    def roundtrip_error(self, raw: Any, decoded: Any) -> float:
        """Distance between a raw sample and ``decode(encode(raw))``; 0 for lossless tokenizers."""
        return 0.0 if raw == decoded else float("inf")

    roundtrip_tolerance: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        """Complete JSON-serializable state: registry name, config and fitted state."""
        return {
            "format": STATE_FORMAT,
            "name": self.registry_name,
            "config": self.config(),
            "fitted": self.fitted_state(),
        }

    @classmethod
    def from_state_dict(cls: type[Self], state: dict[str, Any]) -> Self:
        """Rebuild a tokenizer of this class from ``state_dict()`` output."""
        if not isinstance(state, dict) or not {"config", "fitted"} <= state.keys():
            raise ValueError(
                f"tokenizer state must be a dict with keys 'config' and 'fitted', got {type(state).__name__} "
                f"with keys {sorted(state) if isinstance(state, dict) else None}"
            )
        tokenizer = cls(**state["config"])
        tokenizer.load_fitted_state(state["fitted"])
        return tokenizer

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``state_dict()`` as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.state_dict(), indent=1, ensure_ascii=False))

    def positions(self, length: int) -> Tensor:
        """Coordinates ``(length, A)`` of slots 0..length-1 of a generated sequence."""
        if len(self.axes) != 1:
            raise NotImplementedError(f"{type(self).__name__} has axes {self.axes}: override positions()")
        return torch.arange(length)[:, None]

    def collate(self, samples: Sequence[Tokens]) -> TokenBatch:
        """Pad unequal-length ``Tokens`` into a ``TokenBatch``."""
        return collate_tokens(samples, self.pad_value)


class DiscreteTokenizer(Tokenizer):
    """A tokenizer producing integer ids in ``[0, vocab_size)``, with pad/bos/eos specials."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids, specials included."""

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """Padding id."""

    @property
    @abstractmethod
    def bos_id(self) -> int:
        """Beginning-of-sequence id."""

    @property
    @abstractmethod
    def eos_id(self) -> int:
        """End-of-sequence id."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | Tensor) -> Any:
        """Ids back to a raw sample; specials are dropped; out-of-range ids raise ``ValueError``."""

    @property
    def pad_value(self) -> int:
        """Pad with ``pad_id``."""
        return self.pad_id

    @property
    def non_content_ids(self) -> tuple[int, ...]:
        """Ids a model must never generate (everything special except EOS)."""
        return (self.pad_id, self.bos_id)

    def embedding(self, dim: int) -> nn.Module:
        """A ``vocab_size x dim`` lookup table."""
        table = nn.Embedding(self.vocab_size, dim)
        nn.init.normal_(table.weight, std=0.02)
        return table

    def encode_target(self, raw: Any) -> Tokens:
        """``bos ids eos``: a training target, with slot coordinates from ``positions``."""
        ids = torch.cat([torch.tensor([self.bos_id]), self.encode(raw).values, torch.tensor([self.eos_id])])
        return Tokens(ids, self.positions(ids.shape[0]))

    def encode_prompt(self, raw: Any = None) -> Tokens:
        """``bos ids`` (just ``bos`` when ``raw`` is None): a generation prompt."""
        content = self.encode(raw).values if raw is not None else torch.zeros(0, dtype=torch.long)
        ids = torch.cat([torch.tensor([self.bos_id]), content])
        return Tokens(ids, self.positions(ids.shape[0]))

    def check_ids(self, ids: Sequence[int] | Tensor, argument: str = "ids") -> list[int]:
        """Validate ids as ints in range and return them as a list."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{argument} must be ints, got {type(value).__name__} ({value!r})")
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"{argument} must lie in [0, {self.vocab_size}), got {value}")
        return values


class FeatureTokenizer(Tokenizer):
    """A tokenizer producing float feature frames ``(T, F)``; its embedding is a linear projection."""

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """Feature width F."""

    @property
    def pad_value(self) -> float:
        """Pad with zeros (masked out anyway)."""
        return 0.0

    def embedding(self, dim: int) -> nn.Module:
        """A linear projection ``F -> dim``."""
        return Linear(self.feature_dim, dim)


def enforce_max_length(items: Seq, max_length: int | None, truncate: bool, unit: str, stacklevel: int = 2) -> Seq:
    """``items`` (bytes, ids) within ``max_length``: raise ``ValueError``, or cut with a warning when ``truncate``."""
    if max_length is None or len(items) <= max_length:
        return items
    if not truncate:
        raise ValueError(
            f"text encodes to {len(items)} {unit}, more than max_length={max_length}; shorten it or set truncate=True"
        )
    warnings.warn(f"text of {len(items)} {unit} truncated to max_length={max_length}", stacklevel=stacklevel + 1)
    return items[:max_length]


def collate_tokens(samples: Sequence[Tokens], pad_value: int | float) -> TokenBatch:
    """Right-pad ``Tokens`` of unequal length into one ``TokenBatch``."""
    if not samples:
        raise ValueError("cannot collate an empty list of Tokens")
    lengths = torch.tensor([sample.values.shape[0] for sample in samples])
    values = nn.utils.rnn.pad_sequence([s.values for s in samples], batch_first=True, padding_value=pad_value)
    coords = nn.utils.rnn.pad_sequence([s.coords for s in samples], batch_first=True, padding_value=0)
    valid = torch.arange(values.shape[1])[None, :] < lengths[:, None]  # (B, T)
    return TokenBatch(values, coords, valid)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a tokenizer state JSON file with clear errors."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"tokenizer state file not found: {file}")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"tokenizer state file {file} is not valid JSON: {error}") from None
    if not isinstance(state, dict) or "name" not in state:
        raise ValueError(f"tokenizer state file {file} must hold a JSON object with a 'name' key")
    return state
