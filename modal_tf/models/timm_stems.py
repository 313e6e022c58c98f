"""Stems fit for small images: undo the ImageNet stem's 4x downsampling of timm CNNs.

Notation: S total stride of the network (a 32x32 image leaves the last stage at 32/S x 32/S).

timm's ResNets open with a 7x7 stride-2 convolution and a stride-2 max-pool (He et al. 2016,
https://arxiv.org/abs/1512.03385, Table 1): a 224-pixel image reaches the first stage at 56x56,
a 32x32 one at 8x8, and the last stage sees 1x1 (S = 32). ``timm.create_model`` has no argument
for the stem stride (``stem_type``/``replace_stem_pool`` change the layers, not the stride), so
``TimmImageClassifier(stem=...)`` rewrites the stem right after ``create_model`` (weights are random anyway),
so a checkpoint (which records ``timm_stem``) rebuilds the same network:

* ``small``: the stem downsamples 2x instead of 4x (S = 16, last stage 2x2). ResNets: the 7x7/2
  convolution becomes 3x3/1 (a deep stem keeps its 3x3 convolutions, the first with stride 1),
  the max-pool stays. MobileNet/EfficientNet: ``conv_stem`` gets stride 1.
* ``cifar``: ResNets only; as ``small`` and the max-pool removed too (S = 8, last stage 4x4), the
  usual CIFAR ResNet-18 (He et al. 2016 Sec. 4.2 start CIFAR nets at full resolution). Its first
  stage runs at 32x32: 4x the FLOPs of ``small``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _resnet_parts(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    conv1, maxpool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
    if isinstance(conv1, nn.Module) and isinstance(maxpool, nn.Module):
        return conv1, maxpool
    return None


def _resnet_conv_stride_one(model: nn.Module, conv1: nn.Module) -> str:
    if isinstance(conv1, nn.Conv2d):
        # A fresh 3x3 conv, same widths: the kernel size changes the weight's shape.
        model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=False)
        return "7x7/2 stem conv -> 3x3/1"
    first = next((child for child in conv1.modules() if isinstance(child, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"the ResNet stem {type(conv1).__name__} holds no Conv2d")
    first.stride = (1, 1)  # deep stem: keep the three 3x3 convs, drop the first one's downsampling
    return "deep stem's first 3x3 conv stride 2 -> 1"


def small_stem(model: nn.Module) -> str:
    """Halve the stem's downsampling in place (total stride 32 -> 16); returns what changed.

    Raises:
        TypeError: ``model`` is neither a timm ResNet (``conv1`` + ``maxpool``) nor a
            MobileNet/EfficientNet (``conv_stem``).
    """
    parts = _resnet_parts(model)
    if parts is not None:
        return _resnet_conv_stride_one(model, parts[0]) + ", max-pool kept (total stride 16)"
    conv_stem = getattr(model, "conv_stem", None)
    if isinstance(conv_stem, nn.Conv2d):
        conv_stem.stride = (1, 1)  # padding stays "same" for a 3x3 kernel, so only the stride changes
        return "conv_stem stride 2 -> 1 (total stride 16)"
    raise TypeError(
        "the small stem handles timm ResNets (conv1 + maxpool) and MobileNet/EfficientNets (conv_stem), "
        f"got {type(model).__name__}"
    )


def cifar_stem(model: nn.Module) -> str:
    """Remove the stem's downsampling in place (total stride 32 -> 8); returns what changed.

    Raises:
        TypeError: ``model`` is not a timm ResNet (only ResNets have a stem max-pool to remove).
    """
    parts = _resnet_parts(model)
    if parts is None:
        raise TypeError(f"the cifar stem handles timm ResNets (conv1 + maxpool) only, got {type(model).__name__}")
    change = _resnet_conv_stride_one(model, parts[0])
    model.maxpool = nn.Identity()
    return change + ", max-pool removed (total stride 8)"


STEMS: dict[str, Callable[[nn.Module], str]] = {"small": small_stem, "cifar": cifar_stem}
