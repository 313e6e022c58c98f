"""Checks that a tokenizer honours the plugin contract.

Plugin authors call ``check_tokenizer(MyTokenizer(...), samples)`` in their
tests. Failures raise ``TokenizerContractError`` (never bare ``assert``,
which ``python -O`` strips).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modal_tf.tokenizers import (
    DiscreteTokenizer,
    FeatureTokenizer,
    Tokenizer,
    Tokens,
    load_tokenizer,
    tokenizer_from_state,
)


class TokenizerContractError(AssertionError):
    """A tokenizer broke the plugin contract; the message says which rule and how."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise TokenizerContractError(message)


def _same(a: Tokens, b: Tokens) -> bool:
    return torch.equal(a.values, b.values) and torch.equal(a.coords, b.coords)


def _check_tokens(tokenizer: Tokenizer, tokens: Tokens, where: str) -> None:
    name = type(tokenizer).__name__
    _require(isinstance(tokens, Tokens), f"{name}.encode must return Tokens, got {type(tokens).__name__} ({where})")
    values, coords = tokens.values, tokens.coords
    length = values.shape[0] if values.dim() else -1
    _require(
        coords.dtype == torch.int64 and coords.shape == (length, len(tokenizer.axes)),
        f"{name}: coords must be int64 of shape ({length}, {len(tokenizer.axes)}) for axes {tokenizer.axes}, "
        f"got {coords.dtype} {tuple(coords.shape)} ({where})",
    )
    if coords.numel():
        _require(int(coords.min()) >= 0, f"{name}: coords must be >= 0, got min {int(coords.min())} ({where})")
    if isinstance(tokenizer, DiscreteTokenizer):
        _require(
            values.dim() == 1 and values.dtype == torch.int64,
            f"{name}: ids must be int64 of shape (T,), got {values.dtype} {tuple(values.shape)} ({where})",
        )
        if values.numel():
            low, high = int(values.min()), int(values.max())
            _require(
                low >= 0 and high < tokenizer.vocab_size,
                f"{name}: ids must lie in [0, {tokenizer.vocab_size}), got [{low}, {high}] ({where})",
            )
    elif isinstance(tokenizer, FeatureTokenizer):
        _require(
            values.dim() == 2 and values.is_floating_point() and values.shape[1] == tokenizer.feature_dim,
            f"{name}: features must be float (T, {tokenizer.feature_dim}), got {values.dtype} "
            f"{tuple(values.shape)} ({where})",
        )
        _require(bool(torch.isfinite(values).all()), f"{name}: features contain NaN or inf ({where})")


def _check_no_parameters(tokenizer: Tokenizer) -> None:
    name = type(tokenizer).__name__
    _require(not isinstance(tokenizer, nn.Module), f"{name} must not be an nn.Module (tokenizers are data-side)")
    for attribute, value in vars(tokenizer).items():
        _require(
            not isinstance(value, nn.Module | nn.Parameter),
            f"{name}.{attribute} is a {type(value).__name__}; parameters belong in embedding(dim)",
        )


def check_tokenizer(tokenizer: Tokenizer, samples: Sequence[Any], dim: int = 16) -> None:
    """Check ``tokenizer`` against the contract on ``samples`` (at least two, of unequal length).

    Fits the tokenizer on ``samples`` first if it ``requires_fit``. Checks: no
    parameters; deterministic ``encode``; ids in range and coords shaped by
    ``axes``; ``decode`` round trip within ``roundtrip_tolerance`` (discrete);
    JSON state, ``save``/``load`` and pickle round trips encode identically;
    collation of unequal lengths; ``embedding(dim)`` output ``(B, T, dim)``, finite.

    Raises:
        TokenizerContractError: naming the broken rule.
    """
    name = type(tokenizer).__name__
    _require(len(samples) >= 2, f"check_tokenizer needs at least 2 samples, got {len(samples)}")
    _check_no_parameters(tokenizer)
    _require(
        bool(tokenizer.registry_name),
        f"{name} is not registered; decorate it with @register_tokenizer(name) or declare an entry point",
    )
    if tokenizer.requires_fit:
        tokenizer.fit(samples)
    encoded = [tokenizer.encode(sample) for sample in samples]
    for index, (sample, tokens) in enumerate(zip(samples, encoded, strict=True)):
        _check_tokens(tokenizer, tokens, f"sample {index}")
        _require(_same(tokens, tokenizer.encode(sample)), f"{name}.encode is not deterministic (sample {index})")
        if isinstance(tokenizer, DiscreteTokenizer):
            decoded = tokenizer.decode(tokens.values)
            error = tokenizer.roundtrip_error(sample, decoded)
            _require(
                error <= tokenizer.roundtrip_tolerance,
                f"{name}: decode(encode(x)) is off by {error} > roundtrip_tolerance {tokenizer.roundtrip_tolerance} "
                f"(sample {index})",
            )

    state = tokenizer.state_dict()
    try:
        state = json.loads(json.dumps(state))
    except (TypeError, ValueError) as error:
        raise TokenizerContractError(f"{name}.state_dict() is not JSON-serializable: {error}") from None
    copies = {"state_dict": tokenizer_from_state(state), "pickle": pickle.loads(pickle.dumps(tokenizer))}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        tokenizer.save(path)
        copies["save/load"] = load_tokenizer(path)
    for how, copy in copies.items():
        for index, sample in enumerate(samples):
            _require(
                _same(encoded[index], copy.encode(sample)), f"{name}: {how} round trip changes encode(sample {index})"
            )

    lengths = [tokens.values.shape[0] for tokens in encoded]
    batch = tokenizer.collate(encoded)
    _require(
        batch.valid.sum(1).tolist() == lengths,
        f"{name}.collate: valid mask counts {batch.valid.sum(1).tolist()} != lengths {lengths}",
    )
    embedding = tokenizer.embedding(dim)
    _require(isinstance(embedding, nn.Module), f"{name}.embedding(dim) must return an nn.Module")
    with torch.no_grad():
        output = embedding(batch.values)
    _require(
        tuple(output.shape) == (len(samples), max(lengths), dim),
        f"{name}.embedding({dim}) output must be (B, T, {dim}) = {(len(samples), max(lengths), dim)}, "
        f"got {tuple(output.shape)}",
    )
    _require(bool(torch.isfinite(output).all()), f"{name}.embedding output is not finite")
