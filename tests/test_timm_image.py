"""CNN baselines see exactly the image our ViT sees: patches reassemble losslessly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modal_tf.lit import ModalModule
from modal_tf.models import build_model
from modal_tf.models.timm_image import patches_to_images
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import ByteTokenizer, PatchTokenizer

IDENTITY = PatchTokenizer(patch_size=4, channels=3, mean=[0.0] * 3, std=[1.0] * 3)


def test_patches_reassemble_into_the_images_with_zero_padding() -> None:
    wide, square = torch.rand(3, 8, 12), torch.rand(3, 8, 8)
    images = patches_to_images(IDENTITY.collate([IDENTITY.encode(wide), IDENTITY.encode(square)]), 3, 4)
    assert images.shape == (2, 3, 8, 12)
    torch.testing.assert_close(images[0], wide)
    torch.testing.assert_close(images[1, :, :, :8], square)
    assert images[1, :, :, 8:].abs().max() == 0


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050"])
def test_timm_cnn_trains_on_patch_tokens(name: str) -> None:
    model = build_model("timm", None, {"image": IDENTITY}, num_classes=4, timm_model=name)  # type: ignore[arg-type]
    batch = IDENTITY.collate([IDENTITY.encode(torch.rand(3, 32, 32)) for _ in range(2)])
    logits = model({"image": batch})
    assert logits.shape == (2, 4)
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_timm_shape_rejects_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="unknown timm model"):
        build_model("timm", None, {"image": IDENTITY}, num_classes=4, timm_model="no_such_net")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs the 'patch' tokenizer"):
        build_model("timm", None, {"text": ByteTokenizer()}, num_classes=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="classification task"):
        build_model("timm", None, {"image": IDENTITY}, target=ByteTokenizer())  # type: ignore[arg-type]


def test_a_rebuilt_stem_survives_the_checkpoint_round_trip(tmp_path: Path) -> None:
    """``timm_stem`` is a hyper-parameter, so ``from_checkpoint`` rebuilds the same small-image network."""
    module = ModalModule(shape="timm", timm_model="resnet10t", timm_stem="cifar")
    module.configure_task(TaskSpec({"image": IDENTITY}, class_names=["a", "b", "c"]))
    net = module.net
    assert isinstance(net.model.maxpool, torch.nn.Identity) and "max-pool removed" in net.stem_change  # type: ignore[union-attr]
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "cifar_stem.ckpt")
    restored = ModalModule.from_checkpoint(str(tmp_path / "cifar_stem.ckpt"))
    batch = {"image": IDENTITY.collate([IDENTITY.encode(torch.rand(3, 32, 32)) for _ in range(2)])}
    torch.testing.assert_close(restored.net(batch), module.eval().net(batch))  # type: ignore[misc]
    with pytest.raises(ValueError, match="timm stem must be"):
        build_model("timm", None, {"image": IDENTITY}, num_classes=4, timm_model="resnet10t", timm_stem="tiny")  # type: ignore[arg-type]
