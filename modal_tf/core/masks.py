"""Boolean attention masks for ``F.scaled_dot_product_attention``.

Notation: B batch, Tq query tokens, Tk key tokens. ``True`` means "may attend".

One function builds every self-attention pattern the models need:
bidirectional, causal and prefix-LM (bidirectional over the first P slots,
causal after; Raffel et al. 2020, https://arxiv.org/abs/1910.10683 §3.2.1),
each combined with key padding. Slots are absolute: with a KV cache the queries
sit at ``query_start .. query_start + Tq`` of the key axis.
"""

from __future__ import annotations

import torch
from torch import Tensor


def self_attention_mask(
    key_valid: Tensor | None,
    *,
    num_queries: int,
    query_start: int = 0,
    causal: bool = False,
    prefix_length: int = 0,
) -> tuple[Tensor | None, bool]:
    """Mask for self-attention over ``Tk = query_start + num_queries`` slots.

    Args:
        key_valid: ``(B, Tk)`` bool, True for real tokens, or None when nothing is padded.
        num_queries: Tq, the number of new query slots.
        query_start: Absolute slot of the first query (the KV-cache length).
        causal: Queries may not see later slots.
        prefix_length: With ``causal``, slots ``< prefix_length`` are visible to every query.

    Returns:
        ``(mask, is_causal)``: either a ``(B, 1, Tq, Tk)`` bool mask (or None) and
        ``is_causal=False``, or ``(None, True)`` for the plain causal fast path.
    """
    num_keys = query_start + num_queries
    if key_valid is None:
        if not causal:
            return None, False
        if query_start == 0 and prefix_length == 0:
            return None, True  # SDPA's own causal path: no mask tensor at all
        if num_queries == 1:
            return None, False  # the newest token sees every earlier slot
    device = key_valid.device if key_valid is not None else None
    query_slots = torch.arange(query_start, num_keys, device=device)[:, None]  # (Tq, 1)
    key_slots = torch.arange(num_keys, device=device)[None, :]  # (1, Tk)
    if causal:
        allowed = (key_slots <= query_slots) | (key_slots < prefix_length)  # (Tq, Tk)
    else:
        allowed = torch.ones(num_queries, num_keys, dtype=torch.bool, device=device)
    if key_valid is not None:
        allowed = allowed[None, None] & key_valid[:, None, None, :num_keys]  # (B, 1, Tq, Tk)
        # A padded query must still see something, or softmax over nothing gives NaN,
        # and NaN values leak through later layers' zero attention weights (0 * NaN).
        allowed = allowed | (key_slots == query_slots)
    else:
        allowed = allowed[None, None]  # (1, 1, Tq, Tk)
    return allowed, False


def memory_mask(memory_valid: Tensor | None) -> Tensor | None:
    """Cross-attention mask ``(B, 1, 1, Tm)`` from the memory's ``(B, Tm)`` validity."""
    if memory_valid is None:
        return None
    return memory_valid[:, None, None, :]
