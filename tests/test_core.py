"""Numerical reference tests of the core: SDPA vs manual attention, masks, positions."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange

from modal_tf.core import SelfAttention, Transformer, TransformerConfig, self_attention_mask
from modal_tf.core.positions import (
    LearnedGridPositions,
    LearnedPositions,
    RotaryPositions,
    SinusoidalPositions,
    apply_rotary,
)

CONFIG = TransformerConfig(dim=32, depth=2, num_heads=4, position="none")


def manual_attention(attention: SelfAttention, x: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(Dh)) V written out by hand."""
    q, k, v = rearrange(attention.qkv(x), "b t (three h d) -> three b h t d", three=3, h=attention.num_heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    y = scores.softmax(-1) @ v
    return attention.proj(rearrange(y, "b h t d -> b t (h d)"))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_equals_manual_attention(causal: bool, padded: bool) -> None:
    attention = SelfAttention(CONFIG).eval()
    x = torch.randn(3, 7, 32)
    valid = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 6 + [False]]) if padded else None
    mask, is_causal = self_attention_mask(valid, num_queries=7, causal=causal)
    explicit = mask
    if is_causal:
        explicit = torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
    fast = attention(x, mask, is_causal)
    reference = manual_attention(attention, x, explicit)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


def test_causal_output_ignores_future_tokens() -> None:
    model = Transformer(TransformerConfig(dim=32, depth=2, num_heads=4, position="rope")).eval()
    x = torch.randn(2, 10, 32)
    coords = torch.arange(10)[None, :, None].expand(2, -1, -1)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, 32)
    a = model(x, coords=coords, causal=True)
    b = model(changed, coords=coords, causal=True)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_prefix_lm_mask_is_bidirectional_in_prefix_causal_after() -> None:
    mask, _ = self_attention_mask(None, num_queries=5, causal=True, prefix_length=3)
    assert mask is not None
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_changes_nothing_for_real_tokens(causal: bool) -> None:
    model = Transformer(TransformerConfig(dim=32, depth=2, num_heads=4, position="rope")).eval()
    real = torch.randn(1, 5, 32)
    coords = torch.arange(8)[None, :, None]
    padded = torch.cat([real, 100 * torch.randn(1, 3, 32)], dim=1)
    valid = torch.tensor([[True] * 5 + [False] * 3])
    alone = model(real, coords=coords[:, :5], causal=causal)
    with_pad = model(padded, valid=valid, coords=coords, causal=causal)
    torch.testing.assert_close(with_pad[:, :5], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(with_pad).all()


def test_encoder_without_positions_is_permutation_equivariant() -> None:
    model = Transformer(CONFIG).eval()
    x = torch.randn(2, 9, 32)
    permutation = torch.randperm(9)
    torch.testing.assert_close(model(x)[:, permutation], model(x[:, permutation]), atol=1e-5, rtol=1e-5)


def test_sinusoidal_positions_break_permutation_symmetry() -> None:
    positions = SinusoidalPositions(32, 1)
    coords = torch.arange(9)[None, :, None]
    features = positions(coords)
    assert features.shape == (1, 9, 32)
    assert len({tuple(row.tolist()) for row in features[0]}) == 9  # every position distinct


def test_two_axis_sinusoidal_splits_dim_across_axes() -> None:
    positions = SinusoidalPositions(32, 2)
    same_row = positions(torch.tensor([[[3, 0], [3, 5]]]))
    # The first axis owns the first 8 sin and first 8 cos channels; they only depend on the row.
    torch.testing.assert_close(same_row[0, 0, :8], same_row[0, 1, :8])
    torch.testing.assert_close(same_row[0, 0, 16:24], same_row[0, 1, 16:24])
    assert not torch.allclose(same_row[0, 0], same_row[0, 1])


def test_learned_positions_reject_out_of_range_coordinates() -> None:
    positions = LearnedPositions(32, 2, max_positions=4)
    assert positions(torch.tensor([[[3, 3]]])).shape == (1, 1, 32)
    with pytest.raises(ValueError, match=r"coordinates in \[0, 4\)"):
        positions(torch.tensor([[[4, 0]]]))


def test_learned_grid_looks_up_one_vector_per_cell() -> None:
    positions = LearnedGridPositions(8, (2, 3))
    coords = torch.tensor([[[0, 0], [1, 2], [0, 2]], [[1, 1], [0, 0], [0, 0]]])  # (2, 3, 2)
    features = positions(coords)
    assert features.shape == (2, 3, 8)
    for sample in range(2):
        for token in range(3):
            row, col = coords[sample, token].tolist()
            assert torch.equal(features[sample, token], positions.table[row, col])  # (row, col) picks the vector
    assert positions(torch.zeros(2, 0, 2, dtype=torch.long)).shape == (2, 0, 8)
    with pytest.raises(ValueError, match="coordinates >= 0"):
        positions(torch.tensor([[[0, -1]]]))
    with pytest.raises(ValueError, match=r"coords must have shape \(B, T, 2\)"):
        positions(torch.zeros(1, 3, 1, dtype=torch.long))


def test_learned_grid_resamples_only_rows_past_the_grid() -> None:
    positions = LearnedGridPositions(4, (5,))
    inside = torch.arange(5)[None, :, None]  # (1, 5, 1), the whole grid
    past = torch.arange(10)[None, :, None]  # twice as long
    padded = torch.cat([inside, torch.zeros_like(inside)], dim=1)  # (1, 10, 1): collate pads coordinates with 0
    batch = torch.cat([padded, past])  # (2, 10, 1)
    features = positions(batch)
    torch.testing.assert_close(features[0, :5], positions.table, atol=0, rtol=0)  # untouched inside the grid
    torch.testing.assert_close(features[1], positions.resampled((10,)), atol=0, rtol=0)
    assert not torch.allclose(features[1, :5], positions.table)  # stretched, not the first five rows
    features.sum().backward()  # resampling is differentiable into the table
    assert positions.table.grad is not None and positions.table.grad.abs().sum() > 0

    with torch.no_grad():
        positions.table.fill_(0.25)
    torch.testing.assert_close(positions.resampled((13,)), torch.full((13, 4), 0.25))  # a constant stays constant
    cube = LearnedGridPositions(4, (2, 2, 2))
    assert cube(torch.ones(1, 1, 3, dtype=torch.long)).shape == (1, 1, 4)  # 3 axes look up fine inside the grid
    with pytest.raises(ValueError, match=r"resample 1 or 2 axes.*grid \(2, 2, 2\).*size \(3, 2, 2\)"):
        cube(torch.tensor([[[2, 0, 0]]]))


def test_rope_scores_depend_on_relative_position_only() -> None:
    rotary = RotaryPositions(head_dim=8, num_axes=1)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(query_position: int, key_position: int) -> torch.Tensor:
        cos_q, sin_q = rotary(torch.tensor([[[query_position]]]))
        cos_k, sin_k = rotary(torch.tensor([[[key_position]]]))
        return (apply_rotary(q, cos_q, sin_q) * apply_rotary(k, cos_k, sin_k)).sum()

    torch.testing.assert_close(score(5, 2), score(13, 10))
    assert not torch.allclose(score(5, 2), score(5, 4))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dim": 30, "num_heads": 4}, "divisible by num_heads"),
        ({"dim": 12, "num_heads": 4}, "head_dim"),
        ({"mlp": "relu"}, "mlp must be one of"),
        ({"norm": "batchnorm"}, "norm must be one of"),
        ({"position": "alibi"}, "position must be one of"),
        ({"dropout": 1.5}, "dropout"),
        ({"depth": 0}, "depth must be a positive int"),
        ({"position_grid": (4, 4)}, "position_grid only applies to position='learned_grid'"),
        ({"position": "learned_grid", "position_grid": (4, 0)}, "position_grid must be a list of positive ints"),
        ({"position": "learned_grid", "position_grid": ()}, "position_grid must be a list of positive ints"),
        ({"position": "learned_grid", "position_grid": "44"}, "position_grid must be a list of positive ints"),
        ({"position": "learned_grid", "position_grid": (True, 2)}, "position_grid must be a list of positive ints"),
    ],
)
def test_config_validation(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**changes)  # type: ignore[arg-type]


def test_position_grid_from_yaml_becomes_a_tuple() -> None:
    config = TransformerConfig(position="learned_grid", position_grid=[8, 12])  # type: ignore[arg-type]
    assert config.position_grid == (8, 12)
    assert hash(config) == hash(TransformerConfig(position="learned_grid", position_grid=(8, 12)))


def test_mlp_and_norm_variants_forward_backward() -> None:
    for mlp in ("gelu", "swiglu"):
        for norm in ("layernorm", "rmsnorm"):
            model = Transformer(TransformerConfig(dim=16, depth=1, num_heads=2, mlp=mlp, norm=norm, position="none"))
            out = model(torch.randn(2, 3, 16), causal=True)
            out.sum().backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
