"""LeRobot v2.x datasets (``meta/info.json`` + one parquet file per episode) read as ``Episode`` lists.

Notation: T steps in an episode, D vector dims, H x W image pixels.

pyarrow (parquet) and Pillow (embedded PNG/JPEG frames) are imported only when a dataset is read.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modal_tf.data.episodes import Episode


def load_lerobot(
    root: str | Path, state_key: str = "observation.state", action_key: str = "action", image_key: str | None = "auto"
) -> list[Episode]:
    """Read a LeRobot v2.x dataset folder (``meta/info.json`` + one parquet file per episode).

    Supported: ``codebase_version`` v2.0/v2.1; ``data_path`` from info.json, formatted with
    ``episode_chunk = index // chunks_size``; vector columns ``state_key`` and ``action_key``;
    ``frame_index`` (rows sorted by it); ``task_index`` mapped through ``meta/tasks.jsonl`` (empty
    instruction when either is absent); images only from features of dtype ``image`` (PNG/JPEG bytes
    in a ``{bytes, path}`` struct or a plain binary column). ``image_key="auto"`` takes the first such
    feature or none; ``None`` skips images. Not supported: ``video`` features (mp4 needs a decoder),
    v3.0 multi-episode files. Episodes count as successful unless a ``next.success`` column says not.

    Raises:
        ImportError: pyarrow is not installed.
        FileNotFoundError: ``root``, ``meta/info.json`` or an episode's parquet file is missing.
        ValueError: unsupported version, unknown keys, video images or malformed metadata.
    """
    if importlib.util.find_spec("pyarrow") is None:
        raise ImportError("load_lerobot reads parquet files with pyarrow, which is not installed: pip install pyarrow")
    import pyarrow.parquet as parquet

    folder = Path(root)
    info_path = folder / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"not a LeRobot dataset: {info_path} not found")
    try:
        info = json.loads(info_path.read_text())
        version, features = str(info["codebase_version"]), info["features"]
        template, chunks_size, total = info["data_path"], int(info["chunks_size"]), int(info["total_episodes"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{info_path} is not LeRobot v2 metadata ({type(error).__name__}: {error})") from None
    if not version.startswith("v2"):
        raise ValueError(f"{folder} is LeRobot {version}; this loader reads v2.x (one parquet file per episode)")
    for key in (state_key, action_key):
        if key not in features:
            raise ValueError(f"feature {key!r} not in {info_path}; features are {sorted(features)}")
    image_key = _image_feature(features, image_key, info_path)
    tasks = _tasks(folder / "meta" / "tasks.jsonl")
    episodes = []
    for index in range(total):
        path = folder / template.format(episode_chunk=index // chunks_size, episode_index=index)
        if not path.is_file():
            raise FileNotFoundError(f"episode {index} of {total} (from {info_path}) not found: {path}")
        try:
            table = parquet.read_table(path)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise ValueError(f"{path} is not a readable parquet file ({error})") from None
        if "frame_index" not in table.column_names:
            raise ValueError(f"{path} has no 'frame_index' column; columns are {table.column_names}")
        table = table.sort_by("frame_index")
        images = None if image_key is None else _decode_images(table.column(image_key).to_pylist(), path)
        task = table.column("task_index")[0].as_py() if "task_index" in table.column_names else None
        success = table.column("next.success").to_pylist()[-1] if "next.success" in table.column_names else True
        states, actions = (_vectors(table, key, features[key], path) for key in (state_key, action_key))
        episodes.append(
            Episode("" if task is None else tasks.get(int(task), ""), images, states, actions, bool(success))
        )
    return episodes


def _image_feature(features: dict[str, Any], image_key: str | None, info_path: Path) -> str | None:
    if image_key == "auto":
        return next((name for name, spec in features.items() if spec.get("dtype") == "image"), None)
    if image_key is None:
        return None
    dtype = features.get(image_key, {}).get("dtype")
    if dtype != "image":
        raise ValueError(
            f"image_key {image_key!r} has dtype {dtype!r} in {info_path}; only dtype 'image' (PNG/JPEG bytes in the "
            "parquet file) is supported, not 'video' (mp4); pass image_key=None for state and action only"
        )
    return image_key


def _tasks(path: Path) -> dict[int, str]:
    if not path.is_file():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(line["task_index"]): str(line["task"]) for line in lines}


def _vectors(table: Any, key: str, feature: dict[str, Any], path: Path) -> Tensor:
    """A list-typed (or scalar) parquet column of ``feature["shape"]`` vectors as float32 ``(T, D)``."""
    if key not in table.column_names:
        raise ValueError(f"{path} has no column {key!r}; columns are {table.column_names}")
    column = table.column(key).combine_chunks()
    nested = _is_list(column.type)
    values = np.array(column.flatten() if nested else column, dtype=np.float32)  # (T * D,), a writable copy
    dims = int(np.prod(feature.get("shape", [1])))
    if values.size != len(table) * dims:
        raise ValueError(f"{path}: column {key!r} holds {values.size} values, expected {len(table)} rows x {dims}")
    return torch.from_numpy(values.reshape(len(table), dims))  # (T * D,) -> (T, D)


def _is_list(kind: Any) -> bool:
    """Whether a pyarrow type is a (fixed-size, large) list."""
    import pyarrow.types as types

    return bool(types.is_list(kind) or types.is_large_list(kind) or types.is_fixed_size_list(kind))


def _decode_images(cells: list[Any], path: Path) -> Tensor:
    """PNG/JPEG cells (``{"bytes": ...}`` structs or raw bytes) as uint8 ``(T, 3, H, W)``."""
    from PIL import Image

    frames = []
    for cell in cells:
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        if not isinstance(data, bytes):
            raise ValueError(
                f"{path}: image cell holds no embedded bytes (got {type(data).__name__}); paths unsupported"
            )
        with Image.open(io.BytesIO(data)) as picture:
            frames.append(torch.from_numpy(np.asarray(picture.convert("RGB")).copy()).permute(2, 0, 1))  # (3, H, W)
    return torch.stack(frames)
