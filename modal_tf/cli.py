"""The ``modal-tf`` command.

``modal-tf fit|validate|test|predict --config recipes/...yaml [--key value ...]``
goes through LightningCLI (every constructor argument is a flag and a YAML key).
``modal-tf tokenizers`` lists registered tokenizers (entry points included);
``modal-tf recipes`` lists the bundled recipes with a one-line description;
``modal-tf demo`` trains the bundled tour and prints a summary; ``modal-tf export``, ``rollout``,
``attention`` and ``compare`` export checkpoints, run robot policies closed-loop, draw attention
maps and compare ViTs with CNNs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


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


def _export(argv: Sequence[str]) -> int:
    import argparse

    from modal_tf.export import export_checkpoint

    parser = argparse.ArgumentParser(prog="modal-tf export", description="checkpoint -> safetensors + JSON folder")
    parser.add_argument("--ckpt", required=True, help="a ModalModule checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, help="folder to write model.safetensors, config.json, tokenizers.json")
    options = parser.parse_args(list(argv))
    folder = export_checkpoint(options.ckpt, options.out)
    print(f"exported {options.ckpt} to {folder}/ (load it with modal_tf.load_pretrained({str(folder)!r}))")
    return 0


def _rollout(argv: Sequence[str]) -> int:
    from modal_tf.robot.command import main as rollout_main

    return rollout_main(argv)


def _attention(argv: Sequence[str]) -> int:
    from modal_tf.inspect.command import main as attention_main

    return attention_main(argv)


def _compare(argv: Sequence[str]) -> int:
    from modal_tf.compare import main as compare_main

    return compare_main(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "attention": _attention,
    "compare": _compare,
    "demo": _demo,
    "export": _export,
    "recipes": _print_recipes,
    "rollout": _rollout,
    "tokenizers": _print_tokenizers,
}


def check_config_files(args: Sequence[str]) -> None:
    """Fail early, naming the file, when a ``--config`` file is missing or is not valid YAML."""
    import yaml

    for index, arg in enumerate(args):
        if arg in ("--config", "-c") and index + 1 < len(args):
            path = Path(args[index + 1])
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
        else:
            continue
        if not path.is_file():
            raise FileNotFoundError(f"--config {path}: file not found (list bundled recipes with: modal-tf recipes)")
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ValueError(f"--config {path}: not valid YAML: {error}") from None


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """LightningCLI over ``ModalModule`` and any ``ModalDataModule`` subclass (see ``modal_tf.lit.cli``)."""
    from modal_tf.datamodules import ModalDataModule
    from modal_tf.lit import ModalModule
    from modal_tf.lit.cli import ModalCLI, trainer_defaults

    return ModalCLI(
        ModalModule,
        ModalDataModule,
        subclass_mode_data=True,
        args=None if args is None else list(args),
        run=run,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=trainer_defaults(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modal-tf`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return COMMANDS[args[0]](args[1:])
        check_config_files(args)
        build_cli(None if argv is None else args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ConnectionError) as error:
        if os.environ.get("MODAL_TF_TRACEBACK") or argv is not None:
            raise  # in-process callers (tests, notebooks) get the exception itself
        print(f"modal-tf: error: {error}", file=sys.stderr)
        print("(set MODAL_TF_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
