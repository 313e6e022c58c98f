"""Teacher forcing: shift a target batch and score next-token predictions.

Notation: B batch, T target slots, V vocabulary.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from modal_tf.tokenizers import TokenBatch

IGNORE_INDEX = -100


def shift_target(target: TokenBatch) -> tuple[TokenBatch, Tensor]:
    """Split ``bos a b c eos`` into decoder input ``bos a b c`` and labels ``a b c eos``.

    Returns:
        The input ``TokenBatch`` of ``T - 1`` slots and ``(B, T - 1)`` labels with
        ``IGNORE_INDEX`` at padding.
    """
    if target.values.shape[1] < 2:
        raise ValueError(f"a target needs at least 2 slots (bos + one token), got {target.values.shape[1]}")
    inputs = TokenBatch(target.values[:, :-1], target.coords[:, :-1], target.valid[:, :-1])
    labels = target.values[:, 1:].masked_fill(~target.valid[:, 1:], IGNORE_INDEX)  # (B, T - 1)
    return inputs, labels


def next_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``(B, T, V)`` logits against ``(B, T)`` labels, ignoring padding."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)
