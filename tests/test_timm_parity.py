"""Our ViT reproduces timm's VisionTransformer; learned_grid positions and norm_eps in the models.

Every timm model is built with ``pretrained=False`` (nothing is downloaded) and its weights are
perturbed, so that parity is not an accident of timm's tiny class-token init or zero biases.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import timm
import torch
from helpers import text_batch

from modal_tf.convert import from_timm_vit, to_timm_vit
from modal_tf.core import Transformer, TransformerConfig
from modal_tf.core.positions import LearnedGridPositions
from modal_tf.models import DecoderOnly, EncoderOnly, GenerationConfig, shift_target
from modal_tf.tokenizers import ByteTokenizer, PatchTokenizer, TokenBatch

SMALL: dict[str, Any] = {"patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 4, "num_classes": 10}


def timm_vit(**kwargs: Any) -> Any:
    """A small randomly initialised timm ViT in eval mode, every weight perturbed."""
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**SMALL, **kwargs}).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return vit


def normalized(images: torch.Tensor, tokenizer: PatchTokenizer) -> torch.Tensor:
    """What timm is fed: ``(B, C, H, W)`` images normalized with the tokenizer's statistics."""
    mean, std = torch.tensor(tokenizer.mean or []), torch.tensor(tokenizer.std or [])
    return (images - mean[:, None, None]) / std[:, None, None]


def our_logits(model: EncoderOnly, tokenizer: PatchTokenizer, images: torch.Tensor) -> torch.Tensor:
    return model({"image": tokenizer.collate([tokenizer.encode(image) for image in images])})


@pytest.mark.parametrize(
    ("kwargs", "statistics"),
    [
        ({"img_size": 32, "in_chans": 3}, {}),  # mean/std from timm's pretrained_cfg
        ({"img_size": (32, 48), "in_chans": 1, "qkv_bias": False}, {"mean": [0.3], "std": [0.2]}),
    ],
    ids=["rgb_square", "grey_non_square_no_qkv_bias"],
)
@torch.no_grad()
def test_converted_vit_gives_timm_logits_and_converts_back(kwargs: dict[str, Any], statistics: dict[str, Any]) -> None:
    vit = timm_vit(**kwargs)
    ours, tokenizer = from_timm_vit(vit, **statistics)
    assert not ours.training  # the timm model's mode
    assert tokenizer.mean == list(statistics.get("mean", vit.pretrained_cfg["mean"]))
    assert ours.config.norm_eps == 1e-6 and ours.config.position_grid == vit.patch_embed.grid_size
    assert not any(name.startswith(("blocks", "patch_embed", "pos_embed")) for name, _ in ours.named_parameters())
    height, width = vit.patch_embed.img_size
    images = torch.rand(3, kwargs["in_chans"], height, width, generator=torch.Generator().manual_seed(2))

    expected = vit(normalized(images, tokenizer))  # (3, 10)
    assert not torch.allclose(expected[0], expected[1], atol=1e-3)  # the images are told apart
    torch.testing.assert_close(our_logits(ours, tokenizer, images), expected, atol=1e-5, rtol=1e-5)

    back = to_timm_vit(ours).eval()
    torch.testing.assert_close(back(normalized(images, tokenizer)), expected, atol=1e-5, rtol=1e-5)
    again, _ = from_timm_vit(back, mean=tokenizer.mean, std=tokenizer.std)
    for (name, mine), (_, theirs) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name  # ours -> timm -> ours is the identity


@torch.no_grad()
def test_larger_images_resample_positions_like_timm_and_the_trained_size_is_unchanged() -> None:
    vit = timm_vit(img_size=16, in_chans=3)  # trained grid 4 x 4
    ours, tokenizer = from_timm_vit(vit)
    generator = torch.Generator().manual_seed(3)
    trained = torch.rand(2, 3, 16, 16, generator=generator)
    before = our_logits(ours, tokenizer, trained)
    torch.testing.assert_close(before, vit(normalized(trained, tokenizer)), atol=1e-5, rtol=1e-5)

    for height, width in ((24, 32), (32, 16)):  # both axes grow; only rows grow
        images = torch.rand(2, 3, height, width, generator=generator)
        resized = copy.deepcopy(vit)  # each size is resampled from the trained table
        resized.set_input_size(img_size=(height, width))  # timm resamples pos_embed bicubically (antialiased)
        expected = resized(normalized(images, tokenizer))
        torch.testing.assert_close(our_logits(ours, tokenizer, images), expected, atol=1e-5, rtol=1e-5)

    mixed = tokenizer.collate([tokenizer.encode(trained[0]), tokenizer.encode(images[0])])  # padded batch
    logits = ours({"image": mixed})
    torch.testing.assert_close(logits[0], before[0], atol=1e-5, rtol=1e-5)  # its row is not resampled
    torch.testing.assert_close(logits[1], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_logits(ours, tokenizer, trained), before, atol=0, rtol=0)


@torch.no_grad()
def test_headless_vit_pools_the_same_features() -> None:
    vit = timm_vit(img_size=16, in_chans=3, num_classes=0)
    ours, tokenizer = from_timm_vit(vit)
    assert ours.head is None
    images = torch.rand(2, 3, 16, 16)
    batch = {"image": tokenizer.collate([tokenizer.encode(image) for image in images])}
    expected = vit.forward_head(vit.forward_features(normalized(images, tokenizer)), pre_logits=True)  # (2, D)
    torch.testing.assert_close(ours.pool(*ours.encode(batch)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_token": False, "global_pool": "avg"}, r"global_pool='avg'.*class_token=False.*weights: fc_norm.bias"),
        ({"reg_tokens": 2}, "reg_tokens=2; unconverted weights: reg_token"),
        ({"fc_norm": True}, "fc_norm .*unconverted weights: fc_norm.bias, fc_norm.weight"),
        ({"init_values": 1e-5}, r"block 0: ls1 .*blocks\.0\.ls1\.gamma"),
        ({"qk_norm": True}, r"q_norm .*blocks\.0\.attn\.k_norm\.bias"),
        ({"act_layer": "gelu_tanh"}, r"activation GELUTanh\(\) \(exact nn.GELU only\)"),
        ({"no_embed_class": True}, "no_embed_class=True"),
        ({"pre_norm": True}, r"pre_norm=True .*weights: norm_pre\.bias"),
        ({"final_norm": False}, "final norm .*Identity"),
        ({"global_pool": "map"}, r"global_pool='map'.*attn_pool\.kv\.bias"),
    ],
)
def test_unsupported_timm_features_are_listed(kwargs: dict[str, Any], message: str) -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**SMALL, "depth": 1, "img_size": 16, **kwargs})
    with pytest.raises(
        ValueError, match=f"cannot convert this timm VisionTransformer; unsupported features: .*{message}"
    ):
        from_timm_vit(vit)


def test_converter_input_errors() -> None:
    with pytest.raises(TypeError, match="vit must be a timm VisionTransformer, got Linear"):
        from_timm_vit(torch.nn.Linear(2, 2))
    grey = timm.create_model("vit_tiny_patch16_224", pretrained=False, **{**SMALL, "img_size": 16, "in_chans": 1})
    with pytest.raises(ValueError, match=r"give mean \(1 per-channel values.*mean=\(0.5, 0.5, 0.5\)"):
        from_timm_vit(grey)
    text_model = EncoderOnly(TransformerConfig(dim=16, depth=1, num_heads=2), {"text": ByteTokenizer()}, 3)
    with pytest.raises(ValueError, match=r"one 'patch' input.*position='sinusoidal' with position_grid=None"):
        to_timm_vit(text_model)
    with pytest.raises(TypeError, match="model must be an EncoderOnly"):
        to_timm_vit(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def check_gradients(model: torch.nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_learned_grid_encoder_over_patches_forward_backward() -> None:
    tokenizer = PatchTokenizer(patch_size=4, channels=3, mean=[0.5] * 3, std=[0.2] * 3)
    config = TransformerConfig(dim=16, depth=1, num_heads=2, position="learned_grid", position_grid=(2, 3))
    model = EncoderOnly(config, {"image": tokenizer}, num_classes=3)
    assert model.embedder.positions["image"].table.shape == (2, 3, 16)
    small, large = tokenizer.encode(torch.rand(3, 8, 12)), tokenizer.encode(torch.rand(3, 12, 16))  # grids 2x3, 3x4
    logits = model({"image": tokenizer.collate([small, large])})
    assert logits.shape == (2, 3)
    check_gradients(model, logits.logsumexp(-1).mean())


def test_learned_grid_decoder_over_text_forward_backward_and_cached_generation() -> None:
    config = TransformerConfig(dim=16, depth=2, num_heads=2, position="learned_grid", max_positions=48)
    model = DecoderOnly(config, ByteTokenizer())
    assert model.embedder.positions["target"].table.shape == (48, 16)  # 1 axis: max_positions rows
    inputs, labels = shift_target(text_batch(["Tom hit Jerry.", "Hi!"]))
    logits = model({}, inputs)
    check_gradients(model, torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100))

    model.eval()
    prompt = text_batch(["Tom", "Je"])
    prompt = TokenBatch(prompt.values[:, :-1], prompt.coords[:, :-1], prompt.valid[:, :-1])  # drop eos
    cached = model.generate({}, prompt, GenerationConfig(max_new_tokens=6, stop_at_eos=False))
    full = model.generate({}, prompt, GenerationConfig(max_new_tokens=6, stop_at_eos=False, use_cache=False))
    assert torch.equal(cached.tokens, full.tokens)
    torch.testing.assert_close(cached.logits, full.logits, atol=1e-5, rtol=1e-5)


def test_one_axis_inputs_fall_back_to_max_positions_beside_a_grid() -> None:
    image = PatchTokenizer(patch_size=4, channels=1, mean=[0.5], std=[0.2])
    config = TransformerConfig(dim=16, depth=1, num_heads=2, position="learned_grid", position_grid=(2, 2))
    model = EncoderOnly(config, {"image": image, "text": ByteTokenizer()}, num_classes=2)
    assert isinstance(model.embedder.positions["text"], LearnedGridPositions)
    assert model.embedder.positions["text"].grid == (1024,) and model.embedder.positions["image"].grid == (2, 2)
    ungridded = TransformerConfig(dim=16, depth=1, num_heads=2, position="learned_grid")
    with pytest.raises(ValueError, match=r"input 'image' with axes \('row', 'col'\): .*needs .*position_grid"):
        EncoderOnly(ungridded, {"image": image}, num_classes=2)
    three = TransformerConfig(dim=16, depth=1, num_heads=2, position="learned_grid", position_grid=(2, 2, 2))
    with pytest.raises(ValueError, match=r"over 2 axes needs TransformerConfig.position_grid with 2"):
        EncoderOnly(three, {"image": image}, num_classes=2)


@pytest.mark.parametrize("value", [0.0, -1e-6, 1.0, float("nan"), True, "1e-6"])
def test_norm_eps_validation(value: object) -> None:
    with pytest.raises(ValueError, match="norm_eps must be a float in"):
        TransformerConfig(norm_eps=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_norm_eps_reaches_every_norm(norm: str) -> None:
    model = Transformer(TransformerConfig(dim=16, depth=2, num_heads=2, norm=norm, norm_eps=1e-3))
    norms = [module for module in model.modules() if isinstance(module, torch.nn.LayerNorm | torch.nn.RMSNorm)]
    assert len(norms) == 5 and all(module.eps == 1e-3 for module in norms)
    assert Transformer(TransformerConfig(dim=16, depth=1, num_heads=2)).norm.eps == 1e-5  # the default
