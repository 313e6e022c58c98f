"""CNN (or any timm image model) baselines fed by the same patch tokens as our ViT.

Notation: B batch, T patches, C channels, P patch size, R x K patch grid, D classes.

The comparison harness must give every model the same data, normalization and
augmentation. Rather than a second data path, a timm model here reassembles the
normalized image from the patch tokenizer's ``(row, col)`` patches and runs on
pixels, so "ViT vs CNN" differs only in the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from modal_tf.tokenizers import PatchTokenizer, TokenBatch, Tokenizer


def patches_to_images(batch: TokenBatch, channels: int, patch_size: int) -> Tensor:
    """``(B, T, C*P*P)`` patches at ``(B, T, 2)`` coords back to ``(B, C, R*P, K*P)`` images (zeros where padded)."""
    rows = int(batch.coords[..., 0].max()) + 1
    cols = int(batch.coords[..., 1].max()) + 1
    size = batch.values.shape[0]
    grid = batch.values.new_zeros(size, rows * cols, batch.values.shape[-1])  # (B, R*K, C*P*P)
    slots = batch.coords[..., 0] * cols + batch.coords[..., 1]  # (B, T)
    index = torch.where(batch.valid, slots, rows * cols)  # padded tokens go to a spill slot that is dropped
    grid = torch.cat([grid, grid[:, :1]], dim=1).scatter(1, index[..., None].expand_as(batch.values), batch.values)
    grid = grid[:, : rows * cols]
    return rearrange(grid, "b (r k) (c p q) -> b c (r p) (k q)", r=rows, k=cols, c=channels, p=patch_size, q=patch_size)


class TimmImageClassifier(nn.Module):
    """A ``timm.create_model`` classifier (random init, never a hub download) on reassembled images.

    Args:
        model_name: timm architecture, e.g. ``resnet18``, ``resnet10t``, ``mobilenetv3_small_100``,
            ``vit_tiny_patch16_224`` (with ``timm_kwargs`` such as ``img_size``/``patch_size``).
        inputs: Exactly one input, tokenized by ``patch`` (not ``conv_patch``: its tokens overlap).
        num_classes: Output classes.
        timm_kwargs: Extra ``timm.create_model`` keyword arguments.
        stem: ``""`` keeps timm's ImageNet stem; ``small`` or ``cifar`` rebuild it for small images
            (``modal_tf.models.timm_stems``). ``stem_change`` says what changed.
    """

    def __init__(
        self,
        model_name: str,
        inputs: Mapping[str, Tokenizer],
        num_classes: int,
        timm_kwargs: Mapping[str, Any] | None = None,
        stem: str = "",
    ) -> None:
        super().__init__()
        import timm

        from modal_tf.models.timm_stems import STEMS

        if stem and stem not in STEMS:
            raise ValueError(f"timm stem must be '' or one of {sorted(STEMS)}, got {stem!r}")
        if len(inputs) != 1:
            raise ValueError(f"a timm image model takes exactly one image input, got {sorted(inputs)}")
        self.input_name, tokenizer = next(iter(inputs.items()))
        if type(tokenizer) is not PatchTokenizer:
            raise TypeError(f"a timm image model needs the 'patch' tokenizer, got {type(tokenizer).__name__}")
        if not timm.is_model(model_name):
            raise ValueError(f"unknown timm model {model_name!r}; see timm.list_models()")
        self.channels, self.patch_size = tokenizer.channels, tokenizer.patch_size
        self.model = timm.create_model(
            model_name,
            pretrained=False,
            num_classes=num_classes,
            in_chans=tokenizer.channels,
            **dict(timm_kwargs or {}),
        )
        self.stem_change = STEMS[stem](self.model) if stem else ""

    def forward(self, inputs: Mapping[str, TokenBatch]) -> Tensor:
        """Class logits ``(B, D)``."""
        if self.input_name not in inputs:
            raise ValueError(f"model inputs must include {self.input_name!r}, got {sorted(inputs)}")
        images = patches_to_images(inputs[self.input_name], self.channels, self.patch_size)
        return self.model(images)
