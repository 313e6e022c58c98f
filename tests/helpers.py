"""Small builders shared by tests."""

from __future__ import annotations

import torch

from modal_tf.tokenizers import ByteTokenizer, TokenBatch, Tokens


def text_batch(texts: list[str], tokenizer: ByteTokenizer | None = None) -> TokenBatch:
    """Right-padded batch of byte-encoded texts."""
    tokenizer = tokenizer or ByteTokenizer()
    return tokenizer.collate([tokenizer.encode(text) for text in texts])


def prompt_batch(prompts: list[list[int]]) -> TokenBatch:
    """Right-padded batch of id prompts with 1-D time coordinates."""
    tokens = [Tokens(torch.tensor(ids), torch.arange(len(ids))[:, None]) for ids in prompts]
    return ByteTokenizer().collate(tokens)
