"""AdamW groups, schedule and kernel choice (fused where it applies, foreach under a gradient scaler)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers import ReverseWords
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from modal_tf.core import TransformerConfig
from modal_tf.lit import ModalModule, OptimizerConfig
from modal_tf.lit.optim import build_optimizer, fused_adamw_applies, no_decay_ids, parameter_groups, warmup_cosine


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(10, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 10))


def test_only_matrices_decay() -> None:
    model = small_model()
    decay, keep = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[2].weight), id(model[4].weight)}  # type: ignore[attr-defined]
    assert len(keep["params"]) == 5  # type: ignore[arg-type]  # embedding, norm weight + bias, two biases


def test_the_decay_split_taken_before_sharding_survives_flattened_parameters() -> None:
    model = small_model()
    before = no_decay_ids(model)
    expected = [[id(p) for p in group["params"]] for group in parameter_groups(model, 0.1)]  # type: ignore[attr-defined]
    for parameter in model.parameters():
        parameter.data = parameter.data.flatten()  # what FSDP's use_orig_params does: 1-D views of the shard
    kept = [[id(p) for p in group["params"]] for group in parameter_groups(model, 0.1, before)]  # type: ignore[attr-defined]
    assert kept == expected
    assert parameter_groups(model, 0.1)[0]["params"] == []  # read from the flattened shapes, nothing would decay


def test_frozen_parameters_are_left_out_and_do_not_block_the_fused_kernel() -> None:
    model = small_model()
    model[2].register_parameter("counts", nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False))
    model[4].weight.requires_grad_(False)
    optimizer, _ = build_optimizer(model, OptimizerConfig(), total_steps=10)
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model[4].weight) not in stepped and id(model[2].counts) not in stepped
    assert optimizer.param_groups[0]["fused"]


def test_warmup_then_cosine_to_the_floor() -> None:
    assert warmup_cosine(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert 0.1 < warmup_cosine(12, 4, 20, 0.1) < 1.0


def test_fused_is_picked_on_cpu_and_matches_foreach() -> None:
    fused_model, foreach_model = small_model(), small_model()
    config = OptimizerConfig(lr=1e-2, warmup_steps=0)
    fused, _ = build_optimizer(fused_model, config, total_steps=10)
    foreach, _ = build_optimizer(foreach_model, config, total_steps=10, fused=False)
    assert fused.defaults["fused"] and not fused.defaults["foreach"]
    assert foreach.defaults["foreach"] and not foreach.defaults["fused"]
    ids = torch.randint(0, 10, (4, 6))
    for _ in range(5):
        for model, optimizer in ((fused_model, fused), (foreach_model, foreach)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
            optimizer.step()
    start = small_model().parameters()
    moved = [(a - b).abs().max().item() for a, b in zip(fused_model.parameters(), start, strict=True)]
    assert min(moved) > 1e-3  # the steps did something
    for a, b in zip(fused_model.parameters(), foreach_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_applies_only_to_floating_parameters_on_cpu_or_cuda() -> None:
    assert fused_adamw_applies([torch.zeros(2)])
    assert not fused_adamw_applies([])
    assert not fused_adamw_applies([torch.zeros(2), torch.zeros(2, device="meta")])
    assert not fused_adamw_applies([torch.zeros(2, dtype=torch.int64)])


def test_demanding_fused_where_it_cannot_run_names_what_came() -> None:
    model = small_model().to("meta")
    with pytest.raises(ValueError, match=r"fused=True needs floating parameters on \['cpu', 'cuda'\], got meta/"):
        build_optimizer(model, OptimizerConfig(), total_steps=10, fused=True)


def kernel_used_in_fit(
    tmp_path: Path, steps: int = 1, resume: Path | None = None, save: Path | None = None, **trainer_options: object
) -> dict[str, bool]:
    """The kernel flags of every parameter group as training starts (after any checkpoint is restored)."""
    seen: dict[str, bool] = {}

    class Spy(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            for group in trainer.optimizers[0].param_groups:  # the step reads the groups' flags, not defaults
                for flag in ("fused", "foreach"):
                    assert seen.setdefault(flag, bool(group[flag])) == bool(group[flag])

    config = TransformerConfig(dim=16, depth=1, num_heads=2)
    trainer = pl.Trainer(
        max_steps=steps, callbacks=[Spy()], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu", limit_val_batches=0,
        **trainer_options,  # type: ignore[arg-type]
    )  # fmt: skip
    module = ModalModule(shape="decoder_only", transformer=config)
    trainer.fit(module, datamodule=ReverseWords(batch_size=4), ckpt_path=resume)
    if save is not None:
        trainer.save_checkpoint(save)
    return seen


def test_training_steps_with_the_fused_kernel(tmp_path: Path) -> None:
    assert kernel_used_in_fit(tmp_path) == {"fused": True, "foreach": False}


def test_a_gradient_scaler_gets_foreach_so_clipping_sees_unscaled_gradients(tmp_path: Path) -> None:
    scaled = MixedPrecision("16-mixed", "cpu")  # carries a GradScaler, as fp16 AMP on CUDA does
    used = kernel_used_in_fit(tmp_path, plugins=[scaled], gradient_clip_val=1.0)
    assert used == {"fused": False, "foreach": True}


def test_bf16_mixed_with_clipping_trains_on_foreach_and_without_clipping_on_fused(tmp_path: Path) -> None:
    # Lightning's AMP plugin refuses to clip gradients for an optimizer that unscales in its step, scaler or not
    clipped = kernel_used_in_fit(tmp_path, precision="bf16-mixed", gradient_clip_val=1.0)
    assert clipped == {"fused": False, "foreach": True}
    assert kernel_used_in_fit(tmp_path, precision="bf16-mixed") == {"fused": True, "foreach": False}


def test_a_run_resumed_from_a_foreach_checkpoint_keeps_foreach(tmp_path: Path) -> None:
    checkpoint = tmp_path / "foreach.ckpt"
    kernel_used_in_fit(tmp_path, save=checkpoint, plugins=[MixedPrecision("16-mixed", "cpu")])
    assert kernel_used_in_fit(tmp_path, steps=2, resume=checkpoint) == {"fused": False, "foreach": True}
