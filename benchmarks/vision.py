"""Vision training throughput: our ViT vs timm's ``VisionTransformer`` at the same configuration, CNNs for context.

Notation: B batch, C channels, H x W pixels, P patch side, T = HW / P² patches, F = C P² patch features.

* ``ours``: ``EncoderOnly`` over ``PatchTokenizer`` patches (class token, learned position grid, LayerNorm, GELU
  MLP 4x, qkv bias) — the model step only: patches are cut once up front, as the DataLoader workers do in training;
* ``ours + tokenize``: the same, cutting the batch's patches inside each step (the cost when data loading runs
  in the training process, ``num_workers=0``);
* ``timm ViT``: ``timm.create_model("vit_tiny_patch16_224", img_size=H, patch_size=P, ...)`` at the same dim,
  depth and heads (its conv patch embedding runs inside the model);
* ``timm resnet18`` and ``timm resnet10t``: CNNs as timm builds them (ImageNet stem), for context only.

One timed step is forward, cross-entropy, backward and ``AdamW`` on a fixed random batch. Target (issue #8): ours
>= timm ViT images/s.

    OMP_NUM_THREADS=1 python benchmarks/vision.py [--dtype fp32] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    add_dtype_flag,
    add_run_flags,
    command_line,
    dtypes_to_measure,
    finish,
    heading,
    interleave,
    median,
    paired_ratio,
    seconds,
    start,
)
from core import adamw

from modal_tf.core import TransformerConfig
from modal_tf.models import EncoderOnly
from modal_tf.tokenizers import PatchTokenizer, TokenBatch

TARGET = 1.0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("image", 32), ("patch", 4), ("dim", 192), ("depth", 6), ("heads", 3), ("classes", 10)):
        p.add_argument(f"--{name}", type=int, default=default)
    for name, default in (("batch", 64), ("steps", 2), ("rounds", 5)):
        p.add_argument(f"--{name}", type=int, default=default)
    add_dtype_flag(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_run_flags(p, "vision")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[dict[str, nn.Module], PatchTokenizer]:
    """Every contender at the shape in ``args`` (seeded), and our patch tokenizer."""
    tokenizer = PatchTokenizer(patch_size=args.patch, channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    grid = args.image // args.patch
    config = TransformerConfig(
        dim=args.dim, depth=args.depth, num_heads=args.heads, mlp_ratio=4.0, mlp="gelu", norm="layernorm",
        bias=True, dropout=0.0, position="learned_grid", position_grid=(grid, grid), norm_eps=1e-6,
    )  # fmt: skip
    vit_kwargs = {"img_size": args.image, "patch_size": args.patch, "embed_dim": args.dim, "depth": args.depth}
    models: dict[str, nn.Module] = {}
    for name, make in (
        ("ours", lambda: EncoderOnly(config, {"image": tokenizer}, num_classes=args.classes, pooling="cls")),
        ("timm ViT", lambda: timm.create_model("vit_tiny_patch16_224", num_classes=args.classes, num_heads=args.heads,
                                               **vit_kwargs)),
        ("timm resnet18", lambda: timm.create_model("resnet18", num_classes=args.classes)),
        ("timm resnet10t", lambda: timm.create_model("resnet10t", num_classes=args.classes)),
    ):  # fmt: skip
        torch.manual_seed(0)
        models[name] = make()
    return models, tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    start(args)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.image, args.image, generator=generator)  # (B, C, H, W) in [0, 1]
    labels = torch.randint(0, args.classes, (args.batch,), generator=generator).to(device)
    models, tokenizer = build(args)
    for model in models.values():
        model.to(device).train()

    def tokenized() -> TokenBatch:
        return tokenizer.collate([tokenizer.encode(image) for image in images]).to(device)  # values (B, T, F)

    patches = tokenized()
    pixels = images.to(device)
    optimizers = {name: adamw(m) for name, m in models.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}

    forwards: dict[str, tuple[str, Callable[[], Tensor]]] = {
        "ours": ("ours", lambda: models["ours"]({"image": patches})),
        "ours + tokenize": ("ours", lambda: models["ours"]({"image": tokenized()})),
        **{name: (name, lambda name=name: models[name](pixels)) for name in models if name != "ours"},
    }
    dtypes, dtype_notes = dtypes_to_measure(args.dtype, device)
    lines = heading(
        "Vision training throughput",
        command_line("vision.py", argv),
        f"{args.image}x{args.image} RGB, {args.classes} classes, batch {args.batch}; ViTs: patch {args.patch}, dim "
        f"{args.dim}, depth {args.depth}, heads {args.heads}, mlp x4, class token; {args.steps} steps x {args.rounds} "
        "interleaved rounds after one warm-up",
        device,
    )
    lines += [
        "",
        "| dtype | model | params | images/s (median) | min - max | ours / model (paired) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for dtype in dtypes:
        bf16 = dtype == "bf16"

        def rate(name: str, bf16: bool = bf16) -> float:
            owner, forward = forwards[name]

            def steps() -> None:
                for _ in range(args.steps):
                    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
                    with autocast:
                        loss = F.cross_entropy(forward().float(), labels)
                    loss.backward()
                    optimizers[owner].step()
                    optimizers[owner].zero_grad(set_to_none=True)

            return args.steps * args.batch / seconds(steps, device)

        rates = interleave({name: (lambda name=name: rate(name)) for name in forwards}, args.rounds)
        med = {name: median(r) for name, r in rates.items()}
        for name, (owner, _) in forwards.items():
            lines.append(
                f"| {dtype} | {name} | {params[owner]:,} | {med[name]:,.0f} | {min(rates[name]):,.0f} - "
                f"{max(rates[name]):,.0f} | {paired_ratio(rates['ours'], rates[name]):.2f}x |"
            )
        ratio = paired_ratio(rates["ours"], rates["timm ViT"])
        inline = paired_ratio(rates["ours + tokenize"], rates["timm ViT"])
        verdicts.append(
            f"{dtype}: ours (patches cut by the data pipeline) / timm ViT (patchifies in the step) = {ratio:.2f}x "
            f"(target >= {TARGET:.1f}x) {'ok' if ratio >= TARGET * 0.97 else 'BELOW TARGET'}; with tokenization inside "
            f"the step {inline:.2f}x; tokenizing in the step costs "
            f"{1 - med['ours + tokenize'] / med['ours']:.0%} of ours' rate; timm resnet18 / ours = "
            f"{med['timm resnet18'] / med['ours']:.2f}x"
        )
    return finish("vision", lines, args.write, device, [*dtype_notes, *verdicts])


if __name__ == "__main__":
    sys.exit(main())
