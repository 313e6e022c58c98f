"""The models a comparison can name: our ViT at a few sizes, timm's ViT at the same sizes, timm CNNs.

Every entry becomes a ``ModalModule`` on the same patch tokenizer: ``encoder_only`` for our ViT,
``timm`` (patches reassembled into the image, ``modal_tf/models/timm_image.py``) for the rest,
so data, normalization, loss, optimizer and schedule are shared and only the network differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modal_tf.models.timm_stems import STEMS

FAMILIES = ("vit", "timm_vit", "cnn", "timm")
# (dim, depth, num_heads) per size; mlp_ratio 4 throughout. "micro" exists for smoke tests.
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "micro": (32, 1, 2),
    "tiny": (64, 4, 4),
    "small": (128, 4, 4),
    "base": (192, 6, 3),
}
# Architecture -> stems it can take besides its own: ResNets have a max-pool the cifar stem removes.
CNN_ARCHITECTURES = {
    "resnet18": ("small", "cifar"),
    "resnet10t": ("small", "cifar"),
    "mobilenetv3_small_100": ("small",),
}
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class ModelSpec:
    """One comparable model.

    Attributes:
        name: Name used on the command line and in every table.
        family: ``vit`` (ours), ``timm_vit`` (timm's VisionTransformer, the reference
            implementation), ``cnn`` (a timm CNN) or ``timm`` (any other timm architecture).
        architecture: The timm architecture (``""`` for our ViT).
        size: ``VIT_SIZES`` key for the two ViT families, else ``""``.
        stem: ``""`` keeps timm's ImageNet stem; a ``STEMS`` name (``small``, ``cifar``) rebuilds it
            for small images (``modal_tf/models/timm_stems.py``).
    """

    name: str
    family: str
    architecture: str = ""
    size: str = ""
    stem: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"ModelSpec.family must be one of {FAMILIES}, got {self.family!r}")
        if self.family in ("vit", "timm_vit") and self.size not in VIT_SIZES:
            raise ValueError(f"ModelSpec.size must be one of {sorted(VIT_SIZES)} for a ViT, got {self.size!r}")
        if self.stem and self.stem not in STEMS:
            raise ValueError(f"ModelSpec.stem must be '' or one of {sorted(STEMS)}, got {self.stem!r}")

    @property
    def is_transformer(self) -> bool:
        """Our ViT or timm's (the attention side of the locality question)."""
        return self.family in ("vit", "timm_vit")

    @property
    def description(self) -> str:
        """One line for ``--list-models`` and the report."""
        if self.is_transformer:
            dim, depth, heads = VIT_SIZES[self.size]
            owner = "ours (encoder_only)" if self.family == "vit" else "timm VisionTransformer"
            return f"ViT {owner}: dim {dim}, depth {depth}, {heads} heads, mlp x4, cls token"
        stem = f"{self.stem} stem" if self.stem else "timm's ImageNet stem (total stride 32)"
        return f"timm {self.architecture}, {stem}"

    def module_kwargs(self, image_size: tuple[int, int], patch_size: int) -> dict[str, Any]:
        """``ModalModule`` constructor arguments (without the optimizer) for images of ``(H, W)`` pixels."""
        from modal_tf.core import TransformerConfig

        if self.family == "vit":
            dim, depth, heads = VIT_SIZES[self.size]
            grid = max(image_size) // patch_size + 1  # largest patch coordinate + 1
            config = TransformerConfig(dim=dim, depth=depth, num_heads=heads, mlp_ratio=4.0, max_positions=grid)
            return {"shape": "encoder_only", "transformer": config, "pooling": "cls"}
        if self.family == "timm_vit":
            dim, depth, heads = VIT_SIZES[self.size]
            # num_classes and in_chans come from the task in TimmImageClassifier.
            timm_kwargs = {
                "img_size": image_size,
                "patch_size": patch_size,
                "embed_dim": dim,
                "depth": depth,
                "num_heads": heads,
                "mlp_ratio": 4.0,
            }
            return {"shape": "timm", "timm_model": self.architecture, "timm_kwargs": timm_kwargs}
        return {"shape": "timm", "timm_model": self.architecture, "timm_kwargs": {}, "timm_stem": self.stem}


def _catalogue() -> dict[str, ModelSpec]:
    specs = [ModelSpec(f"vit_{size}", "vit", size=size) for size in VIT_SIZES]
    specs += [ModelSpec(f"timm_vit_{size}", "timm_vit", "vit_tiny_patch16_224", size) for size in VIT_SIZES]
    for architecture, stems in CNN_ARCHITECTURES.items():
        specs.append(ModelSpec(architecture, "cnn", architecture))
        specs += [ModelSpec(f"{architecture}_{stem}stem", "cnn", architecture, stem=stem) for stem in stems]
    return {spec.name: spec for spec in specs}


CATALOGUE = _catalogue()


def resolve_model(name: str) -> ModelSpec:
    """The catalogue entry ``name``, or any timm architecture as ``timm:<architecture>`` (ImageNet stem).

    Raises:
        ValueError: unknown name, or an architecture timm does not have.
    """
    if name in CATALOGUE:
        return CATALOGUE[name]
    if name.startswith(TIMM_PREFIX):
        import timm

        architecture = name.removeprefix(TIMM_PREFIX)
        if not timm.is_model(architecture):
            raise ValueError(f"models: {name!r} is not a timm architecture; see timm.list_models()")
        return ModelSpec(name, "timm", architecture)
    raise ValueError(f"models: unknown model {name!r}; known: {', '.join(CATALOGUE)} or timm:<architecture>")
