"""One LightningModule for every task and model shape.

The network is built once the data is known: in ``setup`` from the
DataModule's fitted tokenizers, or in ``on_load_checkpoint`` from the
tokenizer state stored in the checkpoint (so a checkpoint alone can predict).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchmetrics
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.text import CharErrorRate

from modal_tf.checkpoints import load_checkpoint_file
from modal_tf.core import TransformerConfig
from modal_tf.datamodules.base import ModalDataModule
from modal_tf.datamodules.resume import step_seed
from modal_tf.lit.optim import OptimizerConfig, build_optimizer, no_decay_ids
from modal_tf.lit.precision import slow_precision_warning
from modal_tf.models import SHAPES, EncoderChunk, GenerationConfig, build_model, next_token_loss, shift_target
from modal_tf.task import TaskSpec

CHECKPOINT_KEY = "modal_tf"


def _as(cls: type, value: Any) -> Any:
    """Accept a config dataclass or its ``asdict`` form (how it comes back from a checkpoint)."""
    if isinstance(value, dict):
        if "betas" in value:
            value = {**value, "betas": tuple(value["betas"])}
        return cls(**value)
    if not isinstance(value, cls):
        raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")
    return value


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """Tuples become lists, so ``hparams.yaml`` stays readable by ``yaml.safe_load``."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}


def _batch_size(batch: dict[str, Any]) -> int:
    first = next(iter(batch["inputs"].values())) if batch["inputs"] else batch["target"]
    return int(first.values.shape[0])


class ModalModule(pl.LightningModule):
    """Classification, language modelling and seq2seq over any tokenizers.

    Args:
        shape: ``encoder_only`` (classification), ``decoder_only`` (LM / prefix-LM)
            or ``encoder_decoder`` (seq2seq): the one recipe key that switches models.
        transformer: Core config.
        optimizer: AdamW and schedule.
        pooling: ``cls`` or ``mean`` (encoder-only classification).
        generation: Decoding used for evaluation metrics and ``predict``.
        generate_metrics: Run generation for exact-match / CER during validation and test.
        timm_model: With ``shape: timm``, the timm architecture (a CNN baseline on the same patches).
        timm_kwargs: With ``shape: timm``, extra ``timm.create_model`` arguments.
        timm_stem: With ``shape: timm``, ``small`` or ``cifar`` rebuilds a CNN's ImageNet stem for small
            images (``modal_tf.models.timm_stems``); ``""`` keeps it.
        nonfinite: A NaN/inf training loss stops training with an error naming the step (``raise``)
            or skips that batch's update (``skip``; each skip is logged as ``train/skipped``).
        num_slots: With ``shape: encoder_only`` on a generation task, target tokens predicted in
            parallel (content plus EOS; e.g. an action chunk's steps x dims + 1).
    """

    def __init__(
        self,
        shape: Literal["encoder_only", "decoder_only", "encoder_decoder", "timm"] = "encoder_only",
        transformer: TransformerConfig = TransformerConfig(),  # noqa: B008 - frozen dataclass
        optimizer: OptimizerConfig = OptimizerConfig(),  # noqa: B008
        pooling: Literal["cls", "mean"] = "cls",
        generation: GenerationConfig = GenerationConfig(),  # noqa: B008
        generate_metrics: bool = True,
        timm_model: str = "resnet18",
        timm_kwargs: dict[str, Any] | None = None,
        nonfinite: Literal["raise", "skip"] = "raise",
        num_slots: int = 16,
        timm_stem: str = "",
    ) -> None:
        super().__init__()
        if shape not in SHAPES:
            raise ValueError(f"model.shape must be one of {SHAPES}, got {shape!r}")
        self.shape = shape
        self.transformer_config: TransformerConfig = _as(TransformerConfig, transformer)
        self.optimizer_config: OptimizerConfig = _as(OptimizerConfig, optimizer)
        self.generation_config: GenerationConfig = _as(GenerationConfig, generation)
        self.pooling = pooling
        self.generate_metrics = generate_metrics
        self.timm_model, self.timm_kwargs, self.timm_stem = timm_model, dict(timm_kwargs or {}), timm_stem
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"model.nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.num_slots = num_slots
        self.batches_trained = 0  # restored from checkpoints; drives exact mid-epoch resume
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        # Plain types only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "shape": shape,
                "transformer": _plain(asdict(self.transformer_config)),
                "optimizer": _plain(asdict(self.optimizer_config)),
                "pooling": pooling,
                "generation": asdict(self.generation_config),
                "generate_metrics": generate_metrics,
                "timm_model": timm_model,
                "timm_kwargs": self.timm_kwargs,
                "nonfinite": nonfinite,
                "num_slots": num_slots,
                "timm_stem": timm_stem,
            }
        )
        self.task: TaskSpec | None = None
        self.net: nn.Module | None = None
        self.no_decay: frozenset[int] | None = None  # ids of parameters AdamW leaves undecayed, set with the net
        self.precision_checked: str | None = None  # the precision setup() last weighed against this CPU

    # ----- building -------------------------------------------------------------------------------------------
    def configure_task(self, task: TaskSpec) -> None:
        """Build the network and metrics for ``task`` (idempotent)."""
        if self.net is not None:
            return
        self.task = task
        self.net = build_model(
            self.shape,
            self.transformer_config,
            task.inputs,
            task.target,
            len(task.class_names) or None,
            self.pooling,
            self.timm_model,
            self.timm_kwargs,
            self.num_slots,
            self.timm_stem,
        )
        self.no_decay = no_decay_ids(self.net)  # now, while the shapes are the real ones (FSDP flattens them)
        if task.kind == "classify":
            for stage in ("train", "val", "test"):
                metric = torchmetrics.Accuracy(task="multiclass", num_classes=len(task.class_names))
                setattr(self, f"{stage}_acc", metric)
        else:
            self.val_cer, self.test_cer = CharErrorRate(), CharErrorRate()
            self.val_exact, self.test_exact = torchmetrics.MeanMetric(), torchmetrics.MeanMetric()

    def setup(self, stage: str) -> None:
        """Take the task from the DataModule (restored checkpoints hand theirs to the DataModule), build the network;
        warn once when the precision has no fast kernels on this CPU (``modal_tf.lit.precision``)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, ModalDataModule):
            raise TypeError(f"ModalModule needs a ModalDataModule, got {type(datamodule).__name__}")
        if self.task is not None:
            datamodule.restore_task(self.task)
        datamodule.setup(stage)
        if datamodule.task is None:
            raise RuntimeError("the DataModule did not build its task in setup()")
        self.configure_task(datamodule.task)
        precision = str(self.trainer.precision)
        if precision != self.precision_checked:  # a fit and then a test at the same precision warn once
            self.precision_checked = precision
            warning = slow_precision_warning(precision, self.trainer.strategy.root_device, self._net())
            if warning is not None:
                rank_zero_warn(warning)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the tokenizers' JSON state beside the weights."""
        if self.task is not None:
            checkpoint[CHECKPOINT_KEY] = {"task": self.task.state_dict(), "batches_trained": self.batches_trained}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild tokenizers and network from the checkpoint before weights load."""
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            raise ValueError("checkpoint has no modal_tf task state; it was not written by ModalModule")
        self.configure_task(TaskSpec.from_state_dict(state["task"]))
        self.batches_trained = int(state.get("batches_trained", 0))

    def _net(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError("the model is not built yet: call configure_task() or run it under a Trainer")
        return self.net

    @classmethod
    def from_checkpoint(cls, path: str, map_location: Any = "cpu") -> ModalModule:
        """Rebuild a trained module from a checkpoint alone (``weights_only=True``; no pickle code runs)."""
        checkpoint = load_checkpoint_file(path, map_location)
        for key in ("hyper_parameters", "state_dict"):
            if key not in checkpoint:
                raise ValueError(f"checkpoint {path} has no {key!r}: it was not written by a Lightning Trainer")
        module = cls(**checkpoint["hyper_parameters"])
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        return module.eval()

    # ----- steps ----------------------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        net = self._net()
        size = _batch_size(batch)
        if "labels" in batch:
            logits = net(batch["inputs"])
            loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
            metric = getattr(self, f"{stage}_acc")
            metric(logits.detach(), batch["labels"])
            self.log(f"{stage}/acc", metric, prog_bar=True, batch_size=size)
        else:
            if isinstance(net, EncoderChunk):  # parallel decoding: every slot at once
                labels = net.slot_labels(batch["target"])
                logits = net(batch["inputs"])
            else:
                decoder_input, labels = shift_target(batch["target"])
                logits = net(batch["inputs"], decoder_input)
            loss = next_token_loss(logits, labels)
            real = labels != -100
            accuracy = ((logits.argmax(-1) == labels) & real).sum() / real.sum().clamp_min(1)
            self.log(f"{stage}/token_acc", accuracy, batch_size=size)
            bytes_per_token = getattr(getattr(self.trainer, "datamodule", None), "bytes_per_token", {}).get(stage)
            if bytes_per_token:  # language modelling: report bits per byte of text, comparable across tokenizers
                self.log(f"{stage}/bpb", loss.detach() / math.log(2) / bytes_per_token, batch_size=size, prog_bar=True)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=stage != "train")
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Re-derive all randomness (dropout) from ``(seed, batches trained, rank)``, so a resumed run
        draws exactly what an uninterrupted one would."""
        torch.manual_seed(step_seed(self.seed, self.batches_trained, self.global_rank))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        """One optimization step's loss (None skips the update, when ``nonfinite: skip``)."""
        self.batches_trained += 1
        loss = self._step(batch, "train")
        if torch.isfinite(loss):
            return loss
        if self.nonfinite == "raise":
            raise FloatingPointError(
                f"non-finite training loss {loss.item()} at global step {self.global_step} (batch {batch_idx}); "
                "lower the learning rate, check the data, or set model.nonfinite=skip"
            )
        self.log("train/skipped", 1.0, reduce_fx="sum", batch_size=1)
        return None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss, accuracy and (generation tasks) exact match / CER."""
        self._step(batch, "val")
        self._generation_metrics(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Same as validation, on the test split."""
        self._step(batch, "test")
        self._generation_metrics(batch, "test")

    def _generation_metrics(self, batch: dict[str, Any], stage: str) -> None:
        task = self.task
        # A plain LM (no inputs) has no single right continuation: exact match would mean nothing.
        if "target" not in batch or not batch["inputs"] or not self.generate_metrics:
            return
        if task is None or task.target is None:
            raise RuntimeError("generation metrics need a generation task")
        predictions = self.generate_batch(batch)
        references = [
            task.target.decode(row[valid])
            for row, valid in zip(batch["target"].values, batch["target"].valid, strict=True)
        ]
        exact = torch.tensor([float(p == r) for p, r in zip(predictions, references, strict=True)])
        getattr(self, f"{stage}_exact")(exact)
        self.log(f"{stage}/exact_match", getattr(self, f"{stage}_exact"), prog_bar=True, batch_size=len(exact))
        if all(isinstance(item, str) for item in references):
            getattr(self, f"{stage}_cer")(predictions, references)
            self.log(f"{stage}/cer", getattr(self, f"{stage}_cer"), batch_size=len(exact))

    def generate_batch(self, batch: dict[str, Any], config: GenerationConfig | None = None) -> list[Any]:
        """Decoded generations for every row of ``batch``."""
        task = self.task
        if task is None or task.target is None:
            raise ValueError("generate_batch needs a generation task")
        prompt = task.target.collate([task.target.encode_prompt()] * _batch_size(batch))
        prompt = type(prompt)(*(tensor.to(self.device) for tensor in prompt))
        output = self._net().generate(batch["inputs"], prompt, config or self.generation_config)  # type: ignore[operator]
        return [task.target.decode(row[:length]) for row, length in zip(output.tokens, output.lengths, strict=True)]

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[Any]:
        """Class names (classification) or decoded generations."""
        task = self.task
        if task is None:
            raise RuntimeError("the model is not built yet")
        if task.kind == "classify":
            return [task.class_names[index] for index in self._net()(batch["inputs"]).argmax(-1).tolist()]
        return self.generate_batch(batch)

    def configure_optimizers(self) -> Any:
        """AdamW without decay on norms/biases/embeddings; per-step warm-up + cosine.

        Fused AdamW where it applies, except (1) under a gradient scaler (fp16 AMP): its step unscales the gradients
        inside the step, so clipping and hooks before it would see them scaled; (2) under Lightning's AMP plugin
        with gradient clipping (bf16-mixed too): the plugin refuses to clip for any optimizer that unscales itself.
        """
        total = int(self.trainer.estimated_stepping_batches)
        plugin = self.trainer.precision_plugin
        scaled = getattr(plugin, "scaler", None) is not None
        amp_clipping = isinstance(plugin, MixedPrecision) and bool(self.trainer.gradient_clip_val)
        optimizer, schedule = build_optimizer(
            self._net(),
            self.optimizer_config,
            max(1, total),
            fused=False if scaled or amp_clipping else None,
            no_decay=self.no_decay,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
