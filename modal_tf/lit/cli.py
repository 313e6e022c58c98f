"""LightningCLI with modal_tf's defaults: a fixed run folder, loud resume, safe checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.trainer import Trainer

from modal_tf.checkpoints import load_checkpoint_file
from modal_tf.lit.allocator import KeepFreedMemory
from modal_tf.lit.checkpoint_io import SafeCheckpointIO
from modal_tf.lit.predictions import JsonlPredictionWriter

RUNS_DIR = "runs"


def trainer_defaults() -> dict[str, Any]:
    """CSV logs and checkpoints under ``runs/<name>/``, Rich progress, JSONL predictions, safe checkpoint IO, and
    freed CPU memory kept in the process (``KeepFreedMemory``)."""
    return {
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": RUNS_DIR, "name": "run"},
        },
        "callbacks": [
            RichProgressBar(leave=True),
            ModelCheckpoint(save_last=True),
            JsonlPredictionWriter(),
            KeepFreedMemory(),
        ],
        "plugins": [SafeCheckpointIO()],
    }


class ModalCLI(LightningCLI):
    """``fit`` writes to one fixed folder per run and refuses to silently start over or overwrite.

    - A CSVLogger without an explicit ``version`` logs ``fit`` to ``<save_dir>/<name>/`` (no
      ``version_N`` folders) and ``validate``/``test``/``predict`` to ``<save_dir>/<name>/<subcommand>/``,
      so evaluating never overwrites the training logs, and ``--ckpt_path=last`` always means
      ``<save_dir>/<name>/checkpoints/last.ckpt``.
    - ``--ckpt_path=last`` with no such file fails (Lightning would warn and train from scratch).
    - A fresh ``fit`` into a folder that already holds checkpoints fails instead of overwriting them.
    """

    def _parse_ckpt_path(self) -> None:
        """Lightning reads hyper-parameters from ``--ckpt_path``; check the file first, with a clear error."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and path != "last" and Path(path).is_file():
            load_checkpoint_file(path)  # ValueError naming the file if it is corrupt or not plain data
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        """Give CSV loggers a fixed (empty) version unless the user chose one."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.trainer.get("logger")
        is_csv = isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith("CSVLogger")
        if is_csv and logger.init_args.get("version") is None:
            logger.init_args.version = "" if self.subcommand in (None, "fit") else self.subcommand

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Drop the Rich progress bar when the user disabled progress bars (they would conflict)."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        if config["trainer"].get("enable_progress_bar") is False:
            callbacks = self.trainer_defaults["callbacks"]
            self.trainer_defaults["callbacks"] = [c for c in callbacks if not isinstance(c, RichProgressBar)]
        return super().instantiate_trainer(**kwargs)

    def _checkpoint_folder(self) -> Path:
        logger = self.trainer.logger
        if (
            logger is not None
            and logger.root_dir is not None
            and getattr(logger, "version", None) in ("", self.subcommand)
        ):
            return Path(logger.root_dir) / "checkpoints"  # the fixed run folder of fit
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints"

    def _resolve_last(self) -> str | None:
        """Turn ``--ckpt_path=last`` into this run's ``last.ckpt``, or fail if there is none."""
        options = self.config_init[self.subcommand]
        checkpoint = options.get("ckpt_path")
        if checkpoint == "last":
            path = self._checkpoint_folder() / "last.ckpt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"--ckpt_path=last: there is no {path} to resume from; run without --ckpt_path to start "
                    "a new run, or point --ckpt_path at a checkpoint file"
                )
            options["ckpt_path"] = checkpoint = str(path)
        return checkpoint

    def before_fit(self) -> None:
        """Resolve ``--ckpt_path=last`` loudly; never overwrite another run's checkpoints."""
        folder = self._checkpoint_folder()
        if self._resolve_last() is None and folder.is_dir() and any(folder.glob("*.ckpt")):
            raise FileExistsError(
                f"{folder} already holds checkpoints of an earlier run; resume it with --ckpt_path=last, "
                "start a separate run with --trainer.logger.init_args.version=NAME, or delete the folder"
            )

    def before_validate(self) -> None:
        """``--ckpt_path=last`` means the run's own last checkpoint."""
        self._resolve_last()

    before_test = before_validate
    before_predict = before_validate
