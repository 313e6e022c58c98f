"""Train and measure every model x training fraction x seed under one budget.

A run is: seed everything, take the seeded training subset, fit the patch statistics on it,
build the model, train ``steps`` AdamW steps with warm-up + cosine (``ModalModule``'s own
optimizer), validate every full-data epoch's worth of steps, and report test accuracy of the
last weights (no early stopping or checkpoint selection: every model is treated alike).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch

from modal_tf.allocator import allocator_state
from modal_tf.compare.catalogue import ModelSpec, resolve_model
from modal_tf.compare.config import CompareConfig
from modal_tf.compare.data import PreparedData, PreparedImages, prepare_data
from modal_tf.compare.measure import (
    count_parameters,
    cpu_name,
    flops_per_image,
    images_per_second,
    seconds_per_step,
)
from modal_tf.compare.recorder import RunRecorder
from modal_tf.lit import ModalModule, OptimizerConfig
from modal_tf.lit.allocator import keep_freed_memory_for

THROUGHPUT_BATCH = 64
PROBE_STEPS = 5  # timed training steps (after an untimed one) that turn a time budget into a step count
TIME_MARGIN = 1.1  # a time-budgeted run plans its schedule for 10 % slower steps than the probe measured


@dataclass(frozen=True)
class ModelCost:
    """What a model costs, measured once per model.

    Attributes:
        model: Catalogue name.
        family: ``vit``, ``timm_vit``, ``cnn`` or ``timm``.
        description: Architecture in words (and what the stem surgery did, if any).
        parameters: Trainable parameters.
        flops: Forward FLOPs per image (2 per multiply-add).
        images_per_second: Inference throughput, batch of 64, eval mode, no grad.
    """

    model: str
    family: str
    description: str
    parameters: int
    flops: int
    images_per_second: float


@dataclass(frozen=True)
class RunResult:
    """One trained model.

    Attributes:
        model: Catalogue name.
        family: Model family.
        fraction: Fraction of the training split used.
        seed: Run seed.
        train_images: Training images seen (size of the subset).
        planned_steps: Length of the warm-up + cosine schedule (``steps`` unless a time budget cut it short).
        steps: Optimizer steps taken.
        train_seconds: Fit wall time outside validation.
        val_accuracy: Accuracy on the validation split at the end.
        test_accuracy: Accuracy on the test split at the end (the reported number).
        curve: ``(epoch, validation accuracy)`` pairs, epochs in full-training-set passes.
    """

    model: str
    family: str
    fraction: float
    seed: int
    train_images: int
    planned_steps: int
    steps: int
    train_seconds: float
    val_accuracy: float
    test_accuracy: float
    curve: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TrainedRun:
    """A finished run with what ``measure_cost`` needs."""

    result: RunResult
    module: ModalModule
    data: PreparedImages
    stem: str


@dataclass
class Comparison:
    """Everything a report needs."""

    config: CompareConfig
    command: str
    data: dict[str, Any]
    environment: dict[str, Any]
    costs: dict[str, ModelCost] = field(default_factory=dict)
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-run banners and data-loader hints, which would bury the progress bars."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning\..*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        try:
            yield
        finally:
            logger.setLevel(level)


def build_module(
    spec: ModelSpec, data: PreparedImages, prepared: PreparedData, config: CompareConfig
) -> tuple[ModalModule, str]:
    """The ``ModalModule`` of ``spec`` on ``data``'s task, built before training, and what its stem surgery did."""
    if data.task is None:
        raise RuntimeError("build_module needs PreparedImages.setup() to have run")
    budget = config.budget
    optimizer = OptimizerConfig(lr=budget.lr, weight_decay=budget.weight_decay, warmup_steps=budget.warmup_steps)
    module = ModalModule(optimizer=optimizer, **spec.module_kwargs(prepared.image_size, prepared.patch_size))
    module.configure_task(data.task)  # ModalModule.setup later finds the network built and keeps it
    return module, str(getattr(module.net, "stem_change", ""))


def step_plan(config: CompareConfig, prepared: PreparedData) -> tuple[int, int]:
    """``(steps per run, steps between validations)`` of the step budget."""
    steps_per_epoch = math.ceil(len(prepared.splits["train"]) / config.data.batch_size)
    steps = config.budget.steps or config.budget.epochs * steps_per_epoch
    return steps, min(steps_per_epoch, steps)


def train_run(
    spec: ModelSpec,
    fraction: float,
    seed: int,
    prepared: PreparedData,
    config: CompareConfig,
    on_start: Callable[[int], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> TrainedRun:
    """Train one model on one seeded training subset; returns the result and the trained module.

    Args:
        on_start: Called with the planned number of steps (progress bar total).
        on_step: Called after every training step.
    """
    pl.seed_everything(seed, workers=True, verbose=False)
    data = PreparedImages(prepared, fraction, config.data.batch_size, seed)
    data.setup("fit")
    module, stem = build_module(spec, data, prepared, config)
    steps, validate_every = step_plan(config, prepared)
    max_time = config.budget.max_time
    if max_time is not None:
        # Time budget: estimate the steps that fit so the cosine schedule ends near the deadline; the
        # margin covers data loading and Lightning's per-step overhead, which the probe leaves out.
        batch = data.sample_batch(config.data.batch_size)
        per_step = seconds_per_step(module.net, batch["inputs"], batch["labels"], PROBE_STEPS)  # type: ignore[arg-type]
        steps = max(1, int(max_time / (per_step * TIME_MARGIN)))
        validate_every = min(validate_every, steps)
    if on_start is not None:
        on_start(steps)
    recorder = RunRecorder(on_step, max_time)
    trainer = pl.Trainer(
        accelerator=config.accelerator,
        devices=1,
        max_steps=steps,
        val_check_interval=validate_every,
        check_val_every_n_epoch=None,  # validate every `validate_every` steps across epochs of any subset size
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(module, datamodule=data)
    test = trainer.test(module, datamodule=data, verbose=False)[0]
    steps_per_epoch = math.ceil(len(prepared.splits["train"]) / config.data.batch_size)
    result = RunResult(
        model=spec.name,
        family=spec.family,
        fraction=fraction,
        seed=seed,
        train_images=len(data.splits["train"]) if data.splits else 0,
        planned_steps=steps,
        steps=trainer.global_step,
        train_seconds=recorder.train_seconds,
        val_accuracy=recorder.curve[-1][1] if recorder.curve else float("nan"),
        test_accuracy=float(test["test/acc"]),
        curve=tuple((step / steps_per_epoch, accuracy) for step, accuracy in recorder.curve),
    )
    return TrainedRun(result, module, data, stem)


def measure_cost(spec: ModelSpec, trained: TrainedRun) -> ModelCost:
    """Parameters, FLOPs per image and inference throughput of a trained run's network."""
    net = trained.module.net
    if net is None:
        raise RuntimeError("measure_cost needs a built module")
    batch = trained.data.sample_batch(THROUGHPUT_BATCH)
    return ModelCost(
        model=spec.name,
        family=spec.family,
        description=spec.description + (f": {trained.stem}" if trained.stem else ""),
        parameters=count_parameters(net),
        flops=flops_per_image(net, batch["inputs"]),
        images_per_second=images_per_second(net, batch["inputs"]),
    )


def environment(config: CompareConfig) -> dict[str, Any]:
    """Versions and hardware, written beside the numbers (timings mean little without them)."""
    import lightning
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "machine": platform.machine(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": allocator_state(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "accelerator": config.accelerator,
    }


def run_comparison(
    config: CompareConfig,
    command: str,
    on_run: Callable[[str, int], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> Comparison:
    """Every model x fraction x seed of ``config``.

    Args:
        command: The command line that reproduces the comparison (stored with the results).
        on_run: Called at each run's start with its label and planned steps.
        on_step: Called after every training step.
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    # Before any run, so every architecture (and the first run's time-budget probe) trains with it alike.
    on_cpu = config.accelerator == "cpu" or (config.accelerator == "auto" and not torch.cuda.is_available())
    keep_freed_memory_for("cpu" if on_cpu else "cuda")
    specs = [resolve_model(name) for name in config.models]  # fail on a bad name before any training
    prepared = prepare_data(config.data)
    comparison = Comparison(
        config=config,
        command=command,
        data={
            "source": config.data.source,
            "image_size": list(prepared.image_size),
            "channels": prepared.channels,
            "patch_size": prepared.patch_size,
            "classes": prepared.class_names,
            "split_sizes": {split: len(items) for split, items in prepared.splits.items()},
        },
        environment=environment(config),
    )
    with quiet_lightning():
        for spec in specs:
            for fraction in config.fractions:
                for seed in config.seeds:
                    label = f"{spec.name}  fraction {fraction:g}  seed {seed}"

                    def start(steps: int, label: str = label) -> None:
                        if on_run is not None:
                            on_run(label, steps)

                    trained = train_run(spec, fraction, seed, prepared, config, start, on_step)
                    comparison.runs.append(trained.result)
                    if spec.name not in comparison.costs:
                        comparison.costs[spec.name] = measure_cost(spec, trained)
    comparison.seconds = time.perf_counter() - started
    return comparison
