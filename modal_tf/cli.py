"""The ``modal-tf`` command.

``modal-tf fit|validate|test|predict --config recipes/...yaml [--key value ...]``
goes through LightningCLI (every constructor argument is a flag and a YAML key).
``modal-tf tokenizers`` lists registered tokenizers (entry points included);
``modal-tf recipes`` lists the bundled recipes with a one-line description;
``modal-tf demo`` trains the bundled tour and prints a summary.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

RUNS_DIR = "runs"


def recipes_root() -> Path:
    """The ``recipes/`` folder of this checkout (or of the working directory)."""
    beside_package = Path(__file__).resolve().parents[1] / "recipes"
    return beside_package if beside_package.is_dir() else Path.cwd() / "recipes"


def recipe_description(path: Path) -> str:
    """The first comment line of a recipe YAML."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def list_recipes() -> list[Path]:
    """Every bundled recipe, sorted."""
    return sorted(recipes_root().glob("**/*.yaml"))


def _print_recipes(argv: Sequence[str]) -> int:
    root = recipes_root()
    table = Table(title=f"Bundled recipes ({root})")
    table.add_column("recipe")
    table.add_column("description")
    for path in list_recipes():
        table.add_row(str(path.relative_to(root)), recipe_description(path))
    Console().print(table)
    print("run one with: modal-tf fit --config recipes/<recipe>")
    return 0


def _print_tokenizers(argv: Sequence[str]) -> int:
    from modal_tf.tokenizers.registry import describe_tokenizers

    table = Table(title="Registered tokenizers")
    for column in ("name", "source", "description"):
        table.add_column(column)
    for row in describe_tokenizers():
        table.add_row(*row)
    Console().print(table)
    return 0


def _demo(argv: Sequence[str]) -> int:
    from modal_tf.demo import main as demo_main

    return demo_main(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo": _demo,
    "recipes": _print_recipes,
    "tokenizers": _print_tokenizers,
}


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> object:
    """LightningCLI over ``ModalModule`` and any ``ModalDataModule`` subclass."""
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.trainer import Trainer

    from modal_tf.datamodules import ModalDataModule
    from modal_tf.lit import ModalModule
    from modal_tf.lit.predictions import JsonlPredictionWriter

    class ModalCLI(LightningCLI):
        def instantiate_trainer(self, **kwargs: object) -> Trainer:
            config = self.config_init[self.subcommand] if self.subcommand else self.config_init
            if config["trainer"].get("enable_progress_bar") is False:  # a progress bar callback would conflict
                callbacks = self.trainer_defaults["callbacks"]
                self.trainer_defaults["callbacks"] = [c for c in callbacks if not isinstance(c, RichProgressBar)]
            return super().instantiate_trainer(**kwargs)

    return ModalCLI(
        ModalModule,
        ModalDataModule,
        subclass_mode_data=True,
        args=None if args is None else list(args),
        run=run,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": RUNS_DIR}},
            "callbacks": [RichProgressBar(leave=True), ModelCheckpoint(save_last=True), JsonlPredictionWriter()],
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modal-tf`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    build_cli(None if argv is None else args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
