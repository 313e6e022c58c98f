"""Frozen settings of one comparison: which data, which models, what budget, where the results go.

Every field is a plain YAML/JSON-able value, so ``asdict(config)`` is written beside the results
and the printed command line rebuilds the same config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The default comparison took 17 minutes on 2 busy, shared CPU cores (one thread): our ViT, timm's ViT of
# the same configuration as a reference implementation, and the cheapest timm ResNet. Add more with --models.
DEFAULT_MODELS = ("vit_tiny", "timm_vit_tiny", "resnet10t")


def _positive_int(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class DataSettings:
    """What every model trains and is tested on.

    Attributes:
        source: ``shapes`` (generated 32x32 RGB scenes, class = kind of the largest shape),
            ``digits`` (scikit-learn's 8x8 digits), ``cifar10`` / ``mnist`` (downloaded) or an
            ImageFolder path.
        num_train: Generated training scenes (``shapes`` only); fractions are taken of this.
        num_eval: Generated validation and test scenes each (``shapes`` only).
        patch_size: Patch side P of the shared patch tokenizer; 0 picks 4 (2 for 8x8 digits).
        batch_size: Images per optimizer step, for every model.
        data_seed: Seed of the generated scenes; fixed across run seeds so that seeds vary
            initialization, subset and order, never the test set.
    """

    source: str = "shapes"
    num_train: int = 3000
    num_eval: int = 500
    patch_size: int = 0
    batch_size: int = 32
    data_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_train", "num_eval", "batch_size"):
            _positive_int("data", name, getattr(self, name))
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int) or self.patch_size < 0:
            raise ValueError(f"data.patch_size must be an int >= 0 (0 = automatic), got {self.patch_size!r}")
        if not self.source:
            raise ValueError("data.source must name a data set or a folder, got an empty string")


@dataclass(frozen=True)
class Budget:
    """Training budget and optimizer, identical for every model.

    Attributes:
        epochs: Passes over the *full* training set. Every run, whatever its fraction, takes the
            same number of optimizer steps (``epochs * ceil(num_train / batch_size)``), so the
            data-size sweep varies data, not compute.
        steps: Optimizer steps per run instead of ``epochs``; 0 uses ``epochs``.
        max_time: Seconds of training per run, validation excluded, instead of ``epochs`` / ``steps``
            (equal wall-clock budget; the step count of the schedule is estimated from a timed
            probe of a few steps); ``None`` uses the step budget.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay on weight matrices.
        warmup_steps: Linear warm-up steps before the cosine decay.
    """

    epochs: int = 4
    steps: int = 0
    max_time: float | None = None
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30

    def __post_init__(self) -> None:
        _positive_int("budget", "epochs", self.epochs)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"budget.steps must be an int >= 0 (0 = use epochs), got {self.steps!r}")
        if self.max_time is not None and not (math.isfinite(self.max_time) and self.max_time > 0):
            raise ValueError(f"budget.max_time must be a positive number of seconds or None, got {self.max_time!r}")
        if not self.lr > 0:
            raise ValueError(f"budget.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"budget.weight_decay must be >= 0, got {self.weight_decay!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"budget.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")


@dataclass(frozen=True)
class CompareConfig:
    """One comparison: models x training-set fractions x seeds on one data set.

    Attributes:
        name: Folder name of the results, ``<output>/<name>/``.
        models: Catalogue names (``modal-tf compare --list-models``) or ``timm:<architecture>``.
        seeds: Run seeds (initialization, training subset, batch order); mean and std are over them.
        fractions: Training-set fractions in (0, 1] of the data-size sweep.
        data: Data settings.
        budget: Budget and optimizer.
        output: Parent folder of the results.
        threads: torch intra-op threads; 0 leaves torch's default.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
    """

    name: str = "shapes"
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: tuple[int, ...] = (0, 1)
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0)
    data: DataSettings = field(default_factory=DataSettings)
    budget: Budget = field(default_factory=Budget)
    output: str = "runs/compare"
    threads: int = 0
    accelerator: str = "auto"

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models must name at least one model, got none")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must not repeat, got {list(self.models)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be one or more distinct ints, got {list(self.seeds)}")
        if not self.fractions or len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions must be one or more distinct numbers, got {list(self.fractions)}")
        bad = [fraction for fraction in self.fractions if not 0.0 < fraction <= 1.0]
        if bad:
            raise ValueError(f"fractions must lie in (0, 1], got {bad}")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be an int >= 0 (0 = torch's default), got {self.threads!r}")

    @property
    def run_count(self) -> int:
        """Training runs in the whole comparison."""
        return len(self.models) * len(self.fractions) * len(self.seeds)


def quick(config: CompareConfig) -> CompareConfig:
    """A seconds-long smoke test of ``config``'s pipeline: 2 tiny models, 1 seed, 2 fractions, a few steps."""
    return CompareConfig(
        name=config.name,
        models=("vit_micro", "resnet10t"),
        seeds=(config.seeds[0],),
        fractions=(0.5, 1.0),
        data=DataSettings(
            source=config.data.source,
            num_train=48,
            num_eval=32,
            patch_size=config.data.patch_size,
            batch_size=16,
            data_seed=config.data.data_seed,
        ),
        budget=Budget(steps=3, lr=config.budget.lr, warmup_steps=1),
        output=config.output,
        threads=config.threads,
        accelerator=config.accelerator,
    )
