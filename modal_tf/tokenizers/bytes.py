"""UTF-8 byte tokenizer: 256 byte ids plus pad/bos/eos; lossless, nothing to fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from modal_tf.tokenizers.base import DiscreteTokenizer, Tokens, enforce_max_length
from modal_tf.tokenizers.registry import register_tokenizer


@register_tokenizer("bytes")
class ByteTokenizer(DiscreteTokenizer):
    """UTF-8 bytes as ids 0-255; pad=256, bos=257, eos=258. Axis ``time``.

    Args:
        max_length: Longest encoding in bytes, or None for no limit.
        truncate: Over-long text is cut to ``max_length`` with a warning (True)
            or rejected with ``ValueError`` (False, the default).
    """

    axes = ("time",)

    def __init__(self, max_length: int | None = None, truncate: bool = False) -> None:
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
        self.max_length = max_length
        self.truncate = truncate

    vocab_size = 259  # type: ignore[assignment]
    pad_id = 256  # type: ignore[assignment]
    bos_id = 257  # type: ignore[assignment]
    eos_id = 258  # type: ignore[assignment]

    def config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"max_length": self.max_length, "truncate": self.truncate}

    def encode(self, raw: Any) -> Tokens:
        """Encode a ``str`` to ``(T,)`` byte ids with ``(T, 1)`` time coordinates.

        Lone surrogates (not valid Unicode scalar values) raise ``ValueError``.
        """
        if not isinstance(raw, str):
            raise TypeError(f"bytes tokenizer expects text of type str, got {type(raw).__name__}")
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"text is not valid Unicode (lone surrogate at index {error.start}): {error}") from None
        data = enforce_max_length(data, self.max_length, self.truncate, "bytes")
        ids = torch.frombuffer(bytearray(data), dtype=torch.uint8).long() if data else torch.zeros(0, dtype=torch.long)
        return Tokens(ids, torch.arange(ids.shape[0])[:, None])

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids back to text; specials are dropped; invalid UTF-8 (from sampling) becomes U+FFFD."""
        values = self.check_ids(ids)
        return bytes(value for value in values if value < 256).decode("utf-8", errors="replace")
