"""Weights of timm's ``VisionTransformer`` in our ViT (``EncoderOnly`` over the ``patch`` tokenizer), and back.

Notation: B batch, D model dim, C channels, P patch size, R x Q trained patch grid, N = R * Q patches,
L blocks.

timm's ViT (Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929) and ours are the same network
under other names, with three layout differences, each bridged exactly:

* timm prepends the class token, then adds one learned table ``pos_embed`` ``(1, 1 + N, D)``. Ours adds
  ``learned_grid`` positions ``(R, Q, D)`` to the patches only: the class token is a constant, so its
  position folds into it, ``cls_ours = cls_token + pos_embed[:, 0]``, and the rest is the grid table.
* The patch embedding ``Conv2d(C, D, P, stride=P)`` weight ``(D, C, P, P)`` is our linear weight
  ``(D, C*P*P)``: the ``patch`` tokenizer flattens each patch in the conv's ``(C, P, P)`` order.
* A bias timm leaves out (``qkv_bias=False``, ``proj_bias=False``) is a zero bias in ours.

The rest matches one to one: fused qkv in ``(three, heads, head_dim)`` order, pre-norm blocks, the
fc1-GELU-fc2 MLP, the final norm, class-token pooling and the head. LayerNorm's eps (1e-6 in timm)
travels in ``TransformerConfig.norm_eps``. timm's names appear in this file only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from modal_tf.core import TransformerConfig
from modal_tf.models.encoder_only import EncoderOnly
from modal_tf.tokenizers import PatchTokenizer

if TYPE_CHECKING:  # timm is imported when a conversion runs, not when modal_tf.convert is imported
    from timm.models.vision_transformer import VisionTransformer

# (our name inside a block, timm's name inside a block, is a Linear whose bias timm may leave out)
BLOCK_NAMES = (
    ("attn_norm", "norm1", False),
    ("attn.qkv", "attn.qkv", True),
    ("attn.proj", "attn.proj", True),
    ("mlp_norm", "norm2", False),
    ("mlp.fc", "mlp.fc1", True),
    ("mlp.proj", "mlp.fc2", True),
)


class KeyPair(NamedTuple):
    """One tensor's name in our state dict and in timm's; ``optional``: a bias timm may leave out (zeros)."""

    ours: str
    theirs: str
    optional: bool


def key_pairs(depth: int, input_name: str, has_head: bool) -> list[KeyPair]:
    """Every tensor copied as it is (the patch weight reshaped); cls and positions are handled apart."""
    embedding = f"embedder.embeddings.{input_name}"
    pairs = [KeyPair(f"{embedding}.weight", "patch_embed.proj.weight", False)]
    pairs.append(KeyPair(f"{embedding}.bias", "patch_embed.proj.bias", True))
    for index in range(depth):
        for ours, theirs, linear in BLOCK_NAMES:
            pairs.append(KeyPair(f"encoder.blocks.{index}.{ours}.weight", f"blocks.{index}.{theirs}.weight", False))
            pairs.append(KeyPair(f"encoder.blocks.{index}.{ours}.bias", f"blocks.{index}.{theirs}.bias", linear))
    pairs += [KeyPair("encoder.norm.weight", "norm.weight", False), KeyPair("encoder.norm.bias", "norm.bias", False)]
    if has_head:
        pairs += [KeyPair("head.weight", "head.weight", False), KeyPair("head.bias", "head.bias", True)]
    return pairs


def _norm_problems(name: str, norm: nn.Module, dim: int, eps: float | None) -> list[str]:
    if not isinstance(norm, nn.LayerNorm):
        return [f"{name} is {type(norm).__name__} (only LayerNorm converts)"]
    if norm.normalized_shape != (dim,) or norm.weight is None or norm.bias is None:
        return [f"{name} is not an affine LayerNorm over {dim} channels with a bias"]
    return [] if norm.eps == eps else [f"{name} has eps {norm.eps}, other norms {eps} (one norm_eps for all)"]


def unsupported_features(vit: nn.Module) -> list[str]:
    """What a timm ``VisionTransformer`` uses that our ViT lacks (behaviour not always visible in its keys)."""
    from timm.layers import Attention, Mlp, PatchEmbed
    from timm.models.vision_transformer import Block

    model: Any = vit  # timm's submodules are typed nn.Module; their attributes are read freely below
    problems = []
    if model.global_pool != "token":
        problems.append(f"global_pool={model.global_pool!r} (only 'token', the class token, converts)")
    if not model.has_class_token:
        problems.append("class_token=False")
    if model.num_reg_tokens:
        problems.append(f"reg_tokens={model.num_reg_tokens}")
    if model.no_embed_class:
        problems.append("no_embed_class=True")
    if model.pos_embed is None:
        problems.append("pos_embed='none'")
    if not isinstance(model.fc_norm, nn.Identity):
        problems.append("fc_norm (a norm after pooling)")
    if not isinstance(model.norm_pre, nn.Identity):
        problems.append("pre_norm=True (norm_pre)")
    if model.num_classes == 1:
        problems.append("num_classes=1 (EncoderOnly needs >= 2 classes, or 0 for no head)")
    embed = model.patch_embed
    if type(embed) is not PatchEmbed or not isinstance(embed.norm, nn.Identity) or embed.dynamic_img_pad:
        problems.append(
            f"patch embedding {type(embed).__name__} with a norm or dynamic_img_pad (plain PatchEmbed only)"
        )
    elif embed.patch_size[0] != embed.patch_size[1]:
        problems.append(f"non-square patch_size {embed.patch_size}")
    dim = model.embed_dim
    eps = getattr(model.norm, "eps", None)  # every norm must share the final norm's eps (one norm_eps)
    if isinstance(model.fc_norm, nn.Identity):  # with fc_norm, timm's norm is Identity by design
        problems += _norm_problems("final norm (final_norm=False?)", model.norm, dim, eps)
    for index, block in enumerate(model.blocks):
        if type(block) is not Block or type(block.attn) is not Attention or type(block.mlp) is not Mlp:
            kinds = "/".join(type(module).__name__ for module in (block, block.attn, block.mlp))
            problems.append(f"block {index}: {kinds} (only timm's Block/Attention/Mlp convert)")
            continue
        attn, mlp = block.attn, block.mlp
        extras = {"ls1": block.ls1, "ls2": block.ls2, "q_norm": attn.q_norm, "k_norm": attn.k_norm}
        extras.update({"attn.norm": attn.norm, "mlp.norm": mlp.norm})
        for name, module in extras.items():
            if not isinstance(module, nn.Identity):
                problems.append(f"block {index}: {name} (layer scale, qk_norm or scale_norm)")
        if getattr(attn, "gate", None) is not None:
            problems.append(f"block {index}: gated attention")
        if attn.num_heads * attn.head_dim != dim:
            problems.append(f"block {index}: attention width {attn.num_heads * attn.head_dim} != embed_dim {dim}")
        if type(mlp.act) is not nn.GELU or mlp.act.approximate != "none":
            problems.append(f"block {index}: activation {mlp.act!r} (exact nn.GELU only)")
        problems += _norm_problems(f"block {index} norm1", block.norm1, dim, eps)
        problems += _norm_problems(f"block {index} norm2", block.norm2, dim, eps)
    if len({block.mlp.fc1.out_features for block in model.blocks if type(block.mlp) is Mlp}) > 1:
        problems.append("MLP widths differ between blocks")
    return problems


def _statistics(model: nn.Module, values: Sequence[float] | None, name: str, channels: int) -> list[float]:
    """``values``, or else the model's ``pretrained_cfg[name]`` when it has one value per channel."""
    if values is None:
        pretrained = getattr(model, "pretrained_cfg", None)
        values = pretrained.get(name) if isinstance(pretrained, dict) else None
        if values is None or len(values) != channels:
            raise ValueError(
                f"give {name} ({channels} per-channel values, what you normalize timm's input with): the timm model's "
                f"pretrained_cfg has {name}={values!r}"
            )
    return [float(value) for value in values]


def from_timm_vit(
    vit: nn.Module,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_name: str = "image",
) -> tuple[EncoderOnly, PatchTokenizer]:
    """Our ViT computing what the timm ``VisionTransformer`` computes (same logits, fp32 to ~1e-6).

    Feed timm ``(image - mean) / std`` and our tokenizer the raw image: the tokenizer normalizes.
    Dropout becomes 0 (one knob in ours, five in timm; set it in the config to fine-tune). At the
    trained resolution the two agree exactly; larger images resample the position table as timm's
    ``set_input_size`` / ``dynamic_img_size`` do, smaller ones use its top-left corner (timm would
    shrink it).

    Args:
        vit: A timm ``VisionTransformer`` (``timm.create_model("vit_...")``, typed ``nn.Module`` there).
        mean: Per-channel mean of the input normalization; default: ``vit.pretrained_cfg["mean"]``.
        std: Per-channel std; default: ``vit.pretrained_cfg["std"]``.
        input_name: Name of the image input of the returned ``EncoderOnly``.

    Returns:
        The ``EncoderOnly`` (on the timm model's device and dtype, in its train/eval mode) and its
        ``PatchTokenizer``.

    Raises:
        TypeError: ``vit`` is not a timm ``VisionTransformer``.
        ValueError: it uses features our ViT lacks, or holds weights nothing here converts (all listed),
            or mean/std are missing.
    """
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(vit, VisionTransformer):
        raise TypeError(f"vit must be a timm VisionTransformer, got {type(vit).__name__}")
    model: Any = vit  # timm's submodules are typed nn.Module; their attributes are read freely below
    state = model.state_dict()
    depth, has_head = len(model.blocks), model.num_classes > 0
    pairs = key_pairs(depth, input_name, has_head)
    known = {pair.theirs for pair in pairs} | {"cls_token", "pos_embed"}
    problems = unsupported_features(model)
    unexpected = sorted(set(state) - known)
    if problems or unexpected:
        raise ValueError(
            f"cannot convert this timm VisionTransformer; unsupported features: {'; '.join(problems) or 'none'}; "
            f"unconverted weights: {', '.join(unexpected) or 'none'}"
        )

    channels, patch = model.patch_embed.proj.in_channels, model.patch_embed.patch_size[0]
    grid = tuple(model.patch_embed.grid_size)  # (R, Q)
    tokenizer = PatchTokenizer(
        patch_size=patch,
        channels=channels,
        mean=_statistics(model, mean, "mean", channels),
        std=_statistics(model, std, "std", channels),
    )
    config = TransformerConfig(
        dim=model.embed_dim,
        depth=depth,
        num_heads=model.blocks[0].attn.num_heads,
        mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.embed_dim,
        norm_eps=float(model.norm.eps),
        position="learned_grid",
        position_grid=grid,
    )
    if config.mlp_hidden != model.blocks[0].mlp.fc1.out_features:
        raise ValueError(f"MLP width {config.mlp_hidden} != fc1 width: mlp_ratio {config.mlp_ratio} loses it in float")
    ours = EncoderOnly(config, {input_name: tokenizer}, num_classes=model.num_classes if has_head else None)

    target = ours.state_dict()
    for pair in pairs:
        if pair.theirs in state:
            target[pair.ours] = state[pair.theirs].reshape(target[pair.ours].shape)  # conv (D, C, P, P) -> (D, C*P*P)
        else:  # a bias timm left out
            target[pair.ours] = torch.zeros_like(target[pair.ours])
    dim = model.embed_dim
    positions = state["pos_embed"]  # (1, 1 + N, D)
    if positions.shape != (1, 1 + grid[0] * grid[1], dim):
        raise ValueError(f"pos_embed must be (1, 1 + {grid[0]}*{grid[1]}, {dim}), got {tuple(positions.shape)}")
    target["cls_token"] = state["cls_token"] + positions[:, :1]  # (1, 1, D): the class token's position folded in
    target[f"embedder.positions.{input_name}.table"] = positions[0, 1:].reshape(*grid, dim)  # (N, D) -> (R, Q, D)
    ours.load_state_dict(target)
    reference = state["cls_token"]
    return ours.to(device=reference.device, dtype=reference.dtype).train(model.training), tokenizer


def to_timm_vit(model: EncoderOnly) -> VisionTransformer:
    """The timm ``VisionTransformer`` computing what our ViT computes on its trained grid.

    ``model`` must have the shape ``from_timm_vit`` builds: one ``patch`` input, class-token pooling,
    ``gelu`` MLP, ``layernorm`` with bias, ``learned_grid`` positions over a 2-axis ``position_grid``.
    The class token goes to timm's ``cls_token`` and its position row is zero. Feed timm the image
    normalized with the tokenizer's ``mean``/``std``.

    Raises:
        TypeError: ``model`` is not an ``EncoderOnly``.
        ValueError: it does not have that shape (every difference listed).
    """
    from timm.layers import LayerNorm
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, EncoderOnly):
        raise TypeError(f"model must be an EncoderOnly, got {type(model).__name__}")
    config, tokenizers = model.config, model.embedder.tokenizers
    input_name, tokenizer = next(iter(tokenizers.items()))
    grid = config.position_grid
    problems = []
    if len(tokenizers) != 1 or not isinstance(tokenizer, PatchTokenizer) or type(tokenizer) is not PatchTokenizer:
        problems.append(f"inputs {tokenizers} (one 'patch' input)")
    if model.cls_token is None:
        problems.append(f"pooling={model.pooling!r} (cls)")
    if config.mlp != "gelu" or config.norm != "layernorm" or not config.bias:
        problems.append(f"mlp={config.mlp!r}, norm={config.norm!r}, bias={config.bias} (gelu, layernorm, True)")
    if config.position != "learned_grid" or grid is None or len(grid) != 2:
        problems.append(f"position={config.position!r} with position_grid={grid} (learned_grid over 2 axes)")
    if problems or not isinstance(tokenizer, PatchTokenizer) or grid is None:
        raise ValueError(f"cannot convert this EncoderOnly to a timm VisionTransformer; it has {'; '.join(problems)}")
    patch = tokenizer.patch_size
    vit = VisionTransformer(
        img_size=(grid[0] * patch, grid[1] * patch),
        patch_size=patch,
        in_chans=tokenizer.channels,
        num_classes=model.head.out_features if model.head is not None else 0,
        embed_dim=config.dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_hidden / config.dim,
        norm_layer=functools.partial(LayerNorm, eps=config.norm_eps),
    )
    ours, target = model.state_dict(), vit.state_dict()
    for pair in key_pairs(config.depth, input_name, model.head is not None):
        target[pair.theirs] = ours[pair.ours].reshape(target[pair.theirs].shape)  # linear (D, C*P*P) -> conv
    table = ours[f"embedder.positions.{input_name}.table"]  # (R, Q, D)
    target["cls_token"] = ours["cls_token"]
    target["pos_embed"] = torch.cat([table.new_zeros(1, 1, config.dim), table.reshape(1, -1, config.dim)], dim=1)
    vit.load_state_dict(target)
    return vit.to(device=table.device, dtype=table.dtype).train(model.training)
