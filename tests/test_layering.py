"""The folder layout is the architecture: check who imports what."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modal_tf"
TRAINING_LAYER = ("lit", "datamodules", "compare", "cli.py", "demo.py")
LOWER_LAYERS = (
    "core",
    "tokenizers",
    "models",
    "task.py",
    "testing",
    "data",
    "atomic.py",
    "allocator.py",
    "convert",
    "robot",
    "inspect",
    "export.py",
    "checkpoints.py",
)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files_under(part: str) -> list[Path]:
    target = PACKAGE / part
    return [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("path", files_under("core"), ids=lambda path: path.name)
def test_core_imports_only_torch_and_einops(path: Path) -> None:
    for name in imports_of(path):
        root = name.split(".")[0]
        allowed = root in {"torch", "einops", "__future__"} or root in sys.stdlib_module_names
        allowed = allowed or name.startswith("modal_tf.core")
        assert allowed, f"{path.relative_to(PACKAGE)} imports {name}"


@pytest.mark.parametrize("part", LOWER_LAYERS)
def test_lower_layers_never_import_lightning_or_upwards(part: str) -> None:
    for path in files_under(part):
        for name in imports_of(path):
            assert not name.startswith(("lightning", "pytorch_lightning")), f"{path} imports {name}"
            upward = any(name.startswith(f"modal_tf.{layer.removesuffix('.py')}") for layer in TRAINING_LAYER)
            assert not upward, f"{path} imports the training layer ({name})"


def test_no_top_level_tokenizers_folder_shadows_hugging_face() -> None:
    root = PACKAGE.parent
    assert not (root / "tokenizers").exists(), "a top-level tokenizers/ would shadow Hugging Face's package"
