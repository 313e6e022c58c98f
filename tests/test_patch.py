"""Image patch tokenizers: layouts, validation, statistics, timm parity, resolution freedom, the conv stem."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from timm.layers import PatchEmbed

from modal_tf.core import TransformerConfig
from modal_tf.models import EncoderOnly
from modal_tf.testing import check_tokenizer
from modal_tf.tokenizers.base import Tokens
from modal_tf.tokenizers.conv_stem import ConvPatchTokenizer, ConvStemEmbedding
from modal_tf.tokenizers.patch import PatchTokenizer
from modal_tf.tokenizers.registry import create_tokenizer, tokenizer_from_state

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def rgb(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A random ``(3, H, W)`` uint8 image."""
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def normalized(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` uint8 to float, normalized with MEAN/STD."""
    return (image.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def mixed_samples() -> list[Any]:
    """Images of different sizes and every accepted container."""
    return [
        rgb(8, 8),
        rgb(12, 8, seed=1).numpy().transpose(1, 2, 0).copy(),
        Image.fromarray(rgb(8, 16, seed=2).permute(1, 2, 0).numpy()),
        rgb(16, 12, seed=3).float() / 255,
    ]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (PatchTokenizer, {"patch_size": 4}),
        (PatchTokenizer, {"patch_size": 4, "mean": MEAN, "std": STD}),
        (PatchTokenizer, {"patch_size": 3, "uneven": "pad"}),
        (ConvPatchTokenizer, {"patch_size": 4, "stem_width": 4}),
        (ConvPatchTokenizer, {"patch_size": 5, "uneven": "pad", "mean": MEAN, "std": STD}),
    ],
    ids=["patch_fit", "patch_fixed", "patch_pad", "conv_patch_fit", "conv_patch_pad"],
)
def test_image_tokenizers_pass_the_conformance_kit(cls: type[PatchTokenizer], kwargs: dict[str, Any]) -> None:
    check_tokenizer(cls(**kwargs), mixed_samples())


def test_registry_names_build_the_classes() -> None:
    assert type(create_tokenizer("patch", patch_size=8)) is PatchTokenizer
    assert type(create_tokenizer("conv_patch", patch_size=8)) is ConvPatchTokenizer


@pytest.mark.parametrize("channels", [1, 3])
def test_patches_times_conv_weight_equal_timm_patch_embedding(channels: int) -> None:
    """A weight converter can copy timm's Conv2d(C, D, P, stride=P) weight into our linear projection."""
    patch, dim = 4, 6
    tokenizer = PatchTokenizer(patch_size=patch, channels=channels, mean=MEAN[:channels], std=STD[:channels])
    image = rgb(8, 12)[:channels]  # non-square: 2 x 3 patches
    tokens = tokenizer.encode(image)
    pixels = (image.float() / 255 - torch.tensor(MEAN[:channels])[:, None, None]) / torch.tensor(STD[:channels])[
        :, None, None
    ]

    conv = torch.nn.Conv2d(channels, dim, patch, stride=patch, bias=False)
    linear = torch.nn.Linear(channels * patch * patch, dim, bias=False)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(dim, -1))  # (D, C*P*P)
        expected = conv(pixels[None])[0].flatten(1).T  # (D, R, Q) -> (R*Q, D), row-major
        torch.testing.assert_close(linear(tokens.values), expected, atol=1e-5, rtol=1e-5)

        timm_embed = PatchEmbed(img_size=None, patch_size=patch, in_chans=channels, embed_dim=dim, bias=False)
        linear.weight.copy_(timm_embed.proj.weight.reshape(dim, -1))
        torch.testing.assert_close(linear(tokens.values), timm_embed(pixels[None])[0], atol=1e-5, rtol=1e-5)
    assert tokens.coords.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_uneven_pad_equals_convolving_the_zero_padded_normalized_image() -> None:
    tokenizer = PatchTokenizer(patch_size=4, mean=MEAN, std=STD, uneven="pad")
    image = rgb(9, 6)
    tokens = tokenizer.encode(image)
    assert tokens.coords[-1].tolist() == [2, 1]  # ceil(9/4) x ceil(6/4) = 3 x 2 patches
    padded = torch.nn.functional.pad(normalized(image), (0, 2, 0, 3))  # (3, 12, 8), zeros bottom/right
    conv = torch.nn.Conv2d(3, 5, 4, stride=4, bias=False)
    with torch.no_grad():
        expected = conv(padded[None])[0].flatten(1).T  # (6, 5)
        torch.testing.assert_close(tokens.values @ conv.weight.reshape(5, -1).T, expected, atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    channels=st.sampled_from([1, 3]),
    patch=st.integers(1, 5),
    rows=st.integers(1, 4),
    cols=st.integers(1, 4),
    seed=st.integers(0, 100),
)
def test_patches_reassemble_into_the_image(channels: int, patch: int, rows: int, cols: int, seed: int) -> None:
    tokenizer = PatchTokenizer(patch_size=patch, channels=channels, mean=[0.0] * channels, std=[1.0] * channels)
    image = torch.rand(channels, rows * patch, cols * patch, generator=torch.Generator().manual_seed(seed))
    tokens = tokenizer.encode(image)
    assert tokens.values.shape == (rows * cols, channels * patch * patch)
    rebuilt = tokens.values.reshape(rows, cols, channels, patch, patch).permute(2, 0, 3, 1, 4)  # (C, R, P, Q, P)
    assert torch.equal(rebuilt.reshape(image.shape), image)
    assert tokens.coords.tolist() == [[r, c] for r in range(rows) for c in range(cols)]


def test_every_layout_and_type_encodes_the_same() -> None:
    tokenizer = PatchTokenizer(patch_size=4, mean=MEAN, std=STD)
    image = rgb(8, 12)
    hwc = image.permute(1, 2, 0).numpy()
    reference = tokenizer.encode(image)
    big_endian = (hwc / 255).astype(">f8")
    for raw in (
        hwc,
        hwc.astype(np.float32) / 255,
        Image.fromarray(hwc),
        image.double() / 255,
        hwc[::-1][::-1],
        big_endian,
    ):
        torch.testing.assert_close(tokenizer.encode(raw).values, reference.values, atol=1e-6, rtol=1e-6)
    for raw in (hwc.astype(np.float16) / 255, image.half() / 255):  # 11-bit mantissa: 1e-3 relative
        torch.testing.assert_close(tokenizer.encode(raw).values, reference.values, atol=1e-2, rtol=1e-2)
    grey = PatchTokenizer(patch_size=4, channels=1, mean=[0.5], std=[0.2])
    reference = grey.encode(image[0])  # a 2-D tensor is one channel
    for raw in (image[:1], hwc[..., 0], hwc[..., :1], Image.fromarray(hwc[..., 0])):
        assert torch.equal(grey.encode(raw).values, reference.values)


@pytest.mark.parametrize("cls", [PatchTokenizer, ConvPatchTokenizer])
def test_one_tokenizer_serves_every_resolution_and_models_run_on_both(cls: type[PatchTokenizer]) -> None:
    tokenizer = cls(patch_size=8, mean=MEAN, std=STD)
    small, large = tokenizer.encode(rgb(16, 16)), tokenizer.encode(rgb(24, 24, seed=1))
    assert small.values.shape == (4, tokenizer.feature_dim) and large.values.shape == (9, tokenizer.feature_dim)
    assert PatchTokenizer(patch_size=8).feature_dim == 192 and ConvPatchTokenizer(patch_size=8).feature_dim == 432
    assert large.coords.max().item() == 2
    for position in ("sinusoidal", "rope", "learned"):
        config = TransformerConfig(dim=16, depth=1, num_heads=2, position=position, max_positions=8)
        model = EncoderOnly(config, {"image": tokenizer}, num_classes=3).eval()
        for tokens in (small, large, small):
            logits = model({"image": tokenizer.collate([tokens, tokens])})
            assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        mixed = model({"image": tokenizer.collate([small, large])})  # padded batch of both sizes
        torch.testing.assert_close(mixed[1], model({"image": tokenizer.collate([large])})[0], atol=1e-5, rtol=1e-5)


def test_fit_learns_population_statistics_and_they_survive_json() -> None:
    images = [rgb(8, 8), rgb(4, 12, seed=1), rgb(12, 4, seed=2)]
    tokenizer = PatchTokenizer(patch_size=4)
    assert tokenizer.requires_fit
    with pytest.raises(ValueError, match="not fitted: call fit"):
        tokenizer.encode(images[0])
    tokenizer.fit(iter(images))  # a one-pass generator is enough
    pixels = torch.cat([image.flatten(1).double() / 255 for image in images], dim=1)  # (3, all pixels)
    torch.testing.assert_close(torch.tensor(tokenizer.mean), pixels.mean(1).float())
    torch.testing.assert_close(torch.tensor(tokenizer.std), pixels.std(1, correction=0).float())
    assert not tokenizer.requires_fit and tokenizer.config()["mean"] is None
    state = json.loads(json.dumps(tokenizer.state_dict()))
    restored = tokenizer_from_state(state)
    assert torch.equal(restored.encode(images[1]).values, tokenizer.encode(images[1]).values)

    fixed = PatchTokenizer(patch_size=4, mean=MEAN, std=STD)
    assert not fixed.requires_fit and fixed.fitted_state() == {}
    fixed.fit(images)  # nothing to learn: the constructor's statistics stay
    assert fixed.mean == MEAN and fixed.config()["std"] == STD


def test_fit_errors_and_constant_channels() -> None:
    tokenizer = PatchTokenizer(patch_size=4)
    with pytest.raises(ValueError, match="at least one image"):
        tokenizer.fit([])
    with pytest.raises(ValueError, match="fit: image 1: image must have 3 channel"):
        tokenizer.fit([rgb(8, 8), torch.rand(1, 8, 8)])
    constant = torch.zeros(3, 8, 8)
    constant[1] = torch.rand(8, 8)
    with pytest.warns(UserWarning, match=r"channels \[0, 2\] are constant"):
        tokenizer.fit([constant])
    std = tokenizer.std or []
    assert std[0] == 1.0 and std[2] == 1.0 and std[1] < 1.0
    with pytest.raises(ValueError, match="fitted state must be"):
        tokenizer.load_fitted_state({"mean": [0.0] * 3})
    with pytest.raises(ValueError, match="std must be > 0"):
        tokenizer.load_fitted_state({"mean": [0.0] * 3, "std": [1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match="fixed by its constructor"):
        PatchTokenizer(mean=MEAN, std=STD).load_fitted_state({"mean": MEAN, "std": STD})


BAD_INPUTS: list[tuple[str, Any, type[Exception], str]] = [
    ("one channel to RGB", torch.rand(1, 8, 8), ValueError, r"must have 3 channel\(s\), got 1"),
    (
        "numpy CHW by mistake",
        np.zeros((3, 8, 8), np.float32),
        ValueError,
        r"3 channel\(s\), got 8 .*numpy arrays \(H, W, C\)",
    ),
    ("bool tensor", torch.ones(3, 8, 8, dtype=torch.bool), TypeError, "uint8 .* or floating, got torch.bool"),
    ("complex tensor", torch.ones(3, 8, 8, dtype=torch.complex64), TypeError, "got torch.complex64"),
    ("int64 tensor", torch.ones(3, 8, 8, dtype=torch.int64), TypeError, r"got torch.int64; convert it first"),
    ("uint16 array", np.zeros((8, 8, 3), np.uint16), TypeError, "got dtype uint16"),
    ("object array", np.empty((8, 8, 3), object), TypeError, "got dtype object"),
    ("bool array", np.zeros((8, 8, 3), bool), TypeError, "got dtype bool"),
    (
        "NaN pixel",
        torch.rand(3, 8, 8).index_put_((torch.tensor(0),), torch.tensor(float("nan"))),
        ValueError,
        "NaN or inf",
    ),
    ("inf pixel", np.full((8, 8, 3), np.inf, np.float32), ValueError, "NaN or inf"),
    ("zero height", torch.zeros(3, 0, 8), ValueError, "image is empty: height x width = 0x8"),
    ("zero width", np.zeros((8, 0, 3), np.uint8), ValueError, "image is empty: height x width = 8x0"),
    ("smaller than a patch", torch.rand(3, 2, 8), ValueError, r"2x8 pixels is smaller than one patch of 4x4"),
    ("not a multiple", torch.rand(3, 8, 10), ValueError, r"size 8x10 is not a multiple of patch_size=4.*uneven='pad'"),
    ("rank 1", torch.rand(8), ValueError, r"must be \(C, H, W\) or \(H, W\), got shape \(8,\)"),
    ("rank 4 batch", torch.rand(2, 3, 8, 8), ValueError, r"got shape \(2, 3, 8, 8\)"),
    ("rank 4 array", np.zeros((1, 8, 8, 3)), ValueError, r"\(H, W, C\) or \(H, W\), got shape \(1, 8, 8, 3\)"),
    ("nested list", [[0.0] * 8] * 8, TypeError, "must be a torch.Tensor .* got list"),
    ("palette PIL", Image.new("P", (8, 8)), ValueError, r"mode must be one of .*got 'P'.*convert"),
    ("RGBA PIL", Image.new("RGBA", (8, 8)), ValueError, "got 'RGBA'"),
    ("grey PIL to RGB", Image.new("L", (8, 6)), ValueError, r"got 1 \(PIL image of mode 'L' and width x height 8x6\)"),
]


@pytest.mark.parametrize(
    ("raw", "error", "message"), [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS]
)
@pytest.mark.parametrize("cls", [PatchTokenizer, ConvPatchTokenizer])
def test_bad_images_get_clear_errors(cls: type[PatchTokenizer], raw: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        cls(patch_size=4, mean=MEAN, std=STD).encode(raw)


def test_pad_still_rejects_an_image_smaller_than_a_patch() -> None:
    tokenizer = PatchTokenizer(patch_size=4, mean=MEAN, std=STD, uneven="pad")
    assert tokenizer.encode(torch.rand(3, 4, 5)).values.shape == (2, 48)
    with pytest.raises(ValueError, match=r"3x5 pixels is smaller than one patch of 4x4"):
        tokenizer.encode(torch.rand(3, 3, 5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": 0}, "patch_size must be a positive int, got 0"),
        ({"channels": True}, "channels must be a positive int, got True"),
        ({"uneven": "crop"}, r"uneven must be one of \('pad', 'reject'\), got 'crop'"),
        ({"mean": MEAN}, "give mean and std together"),
        ({"mean": [0.5], "std": [0.2]}, r"constructor mean must be 3 finite numbers .*got \[0.5\]"),
        ({"mean": MEAN, "std": [0.2, 0.0, 0.2]}, "std must be > 0"),
        ({"mean": [0.5, float("nan"), 0.5], "std": STD}, "finite numbers"),
    ],
)
def test_constructor_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PatchTokenizer(**kwargs)
    with pytest.raises(ValueError, match="stem_width must be a positive int"):
        ConvPatchTokenizer(stem_width=0)


def test_conv_stem_on_halo_windows_equals_the_stem_over_the_whole_image() -> None:
    """Each window's stem output is exactly the whole-image stem's output cut into P x P blocks."""
    tokenizer = ConvPatchTokenizer(patch_size=4, mean=MEAN, std=STD, uneven="pad", stem_width=5)
    image = rgb(10, 7)
    tokens = tokenizer.encode(image)
    assert tokens.values.shape == (6, 3 * 8 * 8) and tokens.coords[-1].tolist() == [2, 1]
    embedding = tokenizer.embedding(11)
    assert isinstance(embedding, ConvStemEmbedding)
    with torch.no_grad():
        padded = torch.nn.functional.pad(normalized(image), (2, 2 + 1, 2, 2 + 2))  # halo 2, uneven pad to 12x8
        maps = embedding.stem(padded[None])[0]  # (S, 12, 8)
        blocks = maps.reshape(5, 3, 4, 2, 4).permute(1, 3, 0, 2, 4).reshape(6, -1)  # (T, S*P*P)
        torch.testing.assert_close(embedding(tokens.values[None])[0], embedding.project(blocks), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expects \(B, T, 192\) windows"):
        embedding(torch.zeros(1, 2, 48))


def test_conv_patch_model_learns_stripe_orientation() -> None:
    """A few AdamW steps cut the loss on horizontal-vs-vertical stripes (needs the stem's gradients)."""
    tokenizer = ConvPatchTokenizer(patch_size=4, channels=1, mean=[0.5], std=[0.5], stem_width=4)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (32,), generator=generator)
    stripes = (torch.arange(8) + torch.randint(0, 2, (32, 1), generator=generator)) % 2  # (32, 8), random phase
    images = torch.where(labels[:, None, None].bool(), stripes[:, None, :], stripes[:, :, None]).float()  # (32, 8, 8)
    images = images + 0.1 * torch.randn(images.shape, generator=generator)
    batch = tokenizer.collate([tokenizer.encode(image) for image in images])
    config = TransformerConfig(dim=16, depth=1, num_heads=2, position="sinusoidal")
    model = EncoderOnly(config, {"image": tokenizer}, num_classes=2, pooling="mean")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model({"image": batch}), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    assert all(parameter.grad is not None for parameter in model.embedder.embeddings["image"].parameters())


def test_tokens_are_float32_and_coords_int64_for_every_input_dtype() -> None:
    tokenizer = PatchTokenizer(patch_size=4, mean=MEAN, std=STD)
    for raw in (rgb(4, 4), rgb(4, 4).half(), rgb(4, 4).numpy().transpose(1, 2, 0).astype(np.float64)):
        tokens = tokenizer.encode(raw)
        assert isinstance(tokens, Tokens)
        assert tokens.values.dtype == torch.float32 and tokens.coords.dtype == torch.int64
        tokens.coords.add_(5)  # a caller writing into its coords must not change the next encode
    assert tokenizer.encode(rgb(4, 4)).coords.tolist() == [[0, 0]]
