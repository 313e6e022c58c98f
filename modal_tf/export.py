"""Export a trained checkpoint to a pickle-free folder, and load it back.

``export_checkpoint(ckpt, out)`` writes three files:

- ``model.safetensors``: the network's weights (tied weights stored once),
- ``config.json``: model shape, core config and the other constructor choices,
- ``tokenizers.json``: the task (every tokenizer's JSON state, target, class names).

``load_pretrained(out)`` rebuilds the network from those files alone, with no
pickle anywhere, and gives outputs identical to the checkpoint's.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from modal_tf.atomic import atomic_write_text
from modal_tf.checkpoints import load_checkpoint_file
from modal_tf.core import TransformerConfig
from modal_tf.models import GenerationConfig, build_model
from modal_tf.task import TaskSpec

FORMAT = 1
MODEL_KEYS = ("shape", "transformer", "pooling", "generation", "timm_model", "timm_kwargs", "num_slots")


@dataclass
class Pretrained:
    """A network rebuilt from an export folder, with the task that tells how to feed it."""

    model: nn.Module
    task: TaskSpec
    generation: GenerationConfig
    config: dict[str, Any]


def build_network(config: dict[str, Any], task: TaskSpec) -> nn.Module:
    """The network ``config`` (an export's or a checkpoint's hyper-parameters) describes for ``task``."""
    transformer = TransformerConfig(**config["transformer"]) if config.get("transformer") else None
    return build_model(
        config["shape"],
        transformer,  # type: ignore[arg-type]  # only the timm shape runs without one
        task.inputs,
        task.target,
        len(task.class_names) or None,
        config.get("pooling", "cls"),
        config.get("timm_model", "resnet18"),
        config.get("timm_kwargs"),
        config.get("num_slots", 16),
    )


def pretrained_from_checkpoint(checkpoint_path: str | os.PathLike[str], device: str = "cpu") -> Pretrained:
    """The network of a ModalModule checkpoint without Lightning (``weights_only=True``), in eval mode."""
    checkpoint = load_checkpoint_file(checkpoint_path)
    hyper = checkpoint.get("hyper_parameters")
    state = checkpoint.get("modal_tf")
    if not isinstance(hyper, dict) or not isinstance(state, dict):
        raise ValueError(f"{checkpoint_path} is not a modal_tf checkpoint (no hyper_parameters / modal_tf task state)")
    task = TaskSpec.from_state_dict(state["task"])
    config = {"format": FORMAT, **{key: hyper[key] for key in MODEL_KEYS if key in hyper}}
    network = build_network(config, task)
    weights = {
        key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items() if key.startswith("net.")
    }
    network.load_state_dict(weights)
    generation = GenerationConfig(**config.get("generation", {}))
    return Pretrained(network.to(device).eval(), task, generation, config)


def export_checkpoint(checkpoint_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``tokenizers.json`` for a ModalModule checkpoint."""
    pretrained = pretrained_from_checkpoint(checkpoint_path)
    network, task, config = pretrained.model, pretrained.task, pretrained.config
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".model.", suffix=".safetensors", dir=folder)
    os.close(handle)
    try:
        save_model(network, temporary, metadata={"format": str(FORMAT)})  # dedupes tied weights
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / "model.safetensors")
    finally:
        Path(temporary).unlink(missing_ok=True)
    atomic_write_text(folder / "config.json", json.dumps(config, indent=1))
    atomic_write_text(folder / "tokenizers.json", json.dumps(task.state_dict(), indent=1, ensure_ascii=False))
    return folder


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"export folder is missing {path.name}: {path}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return value


def load_pretrained(folder: str | os.PathLike[str], device: str = "cpu") -> Pretrained:
    """Rebuild the network of an export folder (eval mode) without pickle."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"export folder not found: {root}")
    config = _read_json(root / "config.json")
    if config.get("format") != FORMAT:
        raise ValueError(f"{root / 'config.json'} has format {config.get('format')!r}, this version reads {FORMAT}")
    task = TaskSpec.from_state_dict(_read_json(root / "tokenizers.json"))
    network = build_network(config, task)
    weights = root / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"export folder is missing model.safetensors: {weights}")
    load_model(network, str(weights), device=device)
    generation = GenerationConfig(**config.get("generation", {}))
    return Pretrained(network.to(device).eval(), task, generation, config)
