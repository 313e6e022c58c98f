"""AdamW with decoupled weight decay on matrices only, and a warm-up + cosine schedule.

The optimizer is torch's fused AdamW (one kernel per parameter group) wherever it applies: every trainable
parameter a floating tensor on CPU or CUDA. ``benchmarks/optimizer.py`` measures its step against the
``foreach`` one. Elsewhere it is ``foreach``, and ``ModalModule`` asks for ``foreach`` whenever a gradient
scaler is in play (fp16 AMP on CUDA: a fused step unscales the gradients inside the step, so clipping and every
hook before it would see them scaled) and whenever Lightning's AMP plugin clips gradients (bf16-mixed included:
it refuses to clip for an optimizer that unscales in its step, scaler or not). A run resumed from a checkpoint
keeps the kernel the checkpoint was saved with: torch's ``load_state_dict`` restores each group's ``fused`` and
``foreach`` flags.

Which parameters decay is decided from their shapes (``no_decay_ids``), so the training layer decides when it
builds the network, before a strategy wraps it: FSDP (``use_orig_params``) turns every parameter into a 1-D view
of its shard.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and learning-rate schedule.

    Attributes:
        lr: Peak learning rate.
        weight_decay: Decay applied to weight matrices (not norms, biases or embeddings).
        betas: Adam moment coefficients.
        warmup_steps: Linear warm-up from 0 to ``lr``.
        min_lr_ratio: Cosine decays to ``lr * min_lr_ratio`` at the last step.
    """

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optimizer.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"optimizer.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"optimizer.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optimizer.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")


NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.RMSNorm)  # their parameters never decay, whatever the shape


def no_decay_ids(model: nn.Module) -> frozenset[int]:
    """``id``s of the parameters AdamW must not decay: embedding tables, norm weights, biases and other vectors.

    Read from the parameters' shapes: take it before a strategy reshapes them (FSDP's 1-D shard views).
    """
    exempt = {
        id(parameter)
        for module in model.modules()
        if isinstance(module, NO_DECAY_MODULES)
        for parameter in module.parameters(recurse=False)
    }
    return frozenset(exempt | {id(parameter) for parameter in model.parameters() if parameter.dim() < 2})


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay: Collection[int] | None = None
) -> list[dict[str, object]]:
    """Two AdamW groups of the trainable parameters: matrices decay; norms, biases and embedding tables do not.

    Args:
        model: The network (tied weights are listed once).
        weight_decay: The first group's decay.
        no_decay: ``no_decay_ids`` of ``model`` taken before it was wrapped or sharded; ``None`` takes it now.
    """
    exempt = no_decay_ids(model) if no_decay is None else no_decay
    decay: list[nn.Parameter] = []
    keep: list[nn.Parameter] = []
    for parameter in {id(p): p for p in model.parameters() if p.requires_grad}.values():  # tied weights once
        (keep if id(parameter) in exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


# Device types torch's fused AdamW kernel serves that this library runs on and tests; others get ``foreach``.
FUSED_DEVICE_TYPES = frozenset({"cpu", "cuda"})


def fused_adamw_applies(parameters: Iterable[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW can step every one of ``parameters`` (``False`` for none).

    It can when each is a floating tensor on a ``FUSED_DEVICE_TYPES`` device.
    """
    seen = False
    for parameter in parameters:
        seen = True
        if parameter.device.type not in FUSED_DEVICE_TYPES or not parameter.is_floating_point():
            return False
    return seen


def adamw_kernel(parameters: list[torch.Tensor], fused: bool | None = None) -> dict[str, bool]:
    """AdamW's kernel keyword for ``parameters``: ``{"fused": True}`` or ``{"foreach": True}``.

    Args:
        parameters: The trainable parameters the optimizer will step.
        fused: ``None`` picks fused when ``fused_adamw_applies``; ``False`` forces foreach; ``True`` demands fused.

    Raises:
        ValueError: ``fused=True`` for parameters the fused kernel cannot step (naming their device/dtype).
    """
    applies = fused_adamw_applies(parameters)
    if fused and not applies:
        refused = [p for p in parameters if not fused_adamw_applies([p])]
        kinds = sorted({f"{p.device.type}/{p.dtype}" for p in refused}) or ["no trainable parameters"]
        raise ValueError(
            f"fused=True needs floating parameters on {sorted(FUSED_DEVICE_TYPES)}, got {', '.join(kinds)}"
        )
    return {"fused": True} if (applies if fused is None else fused) else {"foreach": True}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine to ``min_lr_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module,
    config: OptimizerConfig,
    total_steps: int,
    *,
    fused: bool | None = None,
    no_decay: Collection[int] | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its per-step LambdaLR schedule.

    Args:
        model: The network; its trainable parameters are split by ``parameter_groups``.
        config: Learning rate, decay, betas and schedule.
        total_steps: Optimizer steps of the whole run (the cosine's length).
        fused: ``None`` picks the fused kernel when ``fused_adamw_applies`` to the parameters, else ``foreach``;
            ``False`` forces ``foreach`` (the caller knows a gradient scaler is in play); ``True`` demands fused.
        no_decay: Passed to ``parameter_groups``.

    Raises:
        ValueError: ``fused=True`` for parameters the fused kernel cannot step.
    """
    groups = parameter_groups(model, config.weight_decay, no_decay)
    kernel = adamw_kernel([parameter for parameter in model.parameters() if parameter.requires_grad], fused)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, **kernel)
    warmup = min(config.warmup_steps, max(0, total_steps // 2))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total_steps, config.min_lr_ratio)
    )
    return optimizer, schedule
