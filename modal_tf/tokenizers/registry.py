"""Tokenizer registry: built-ins by decorator, third-party plugins by entry point.

Third-party packages declare, in their ``pyproject.toml``::

    [project.entry-points."modal_tf.tokenizers"]
    my_name = "my_package.module:MyTokenizer"

and their tokenizer works by name after ``pip install``. Entry points are
loaded lazily, on the first lookup of a name not registered yet; a plugin that
fails to import produces a warning naming its distribution, not a crash.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from modal_tf.tokenizers.base import Tokenizer, read_state

ENTRY_POINT_GROUP = "modal_tf.tokenizers"
_REGISTRY: dict[str, type[Tokenizer]] = {}
T = TypeVar("T", bound=type[Tokenizer])


def register_tokenizer(name: str) -> Callable[[T], T]:
    """Class decorator registering a ``Tokenizer`` subclass under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"tokenizer name must be a non-empty str, got {name!r}")

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Tokenizer)):
            raise TypeError(f"@register_tokenizer({name!r}) needs a Tokenizer subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"tokenizer name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _plugin_entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def _load_entry_point(entry: EntryPoint) -> None:
    distribution = entry.dist.name if entry.dist is not None else "unknown distribution"
    try:
        loaded = entry.load()
    except Exception as error:  # a broken plugin must not take the CLI down
        warnings.warn(
            f"tokenizer plugin {entry.name!r} from distribution {distribution!r} failed to load: "
            f"{type(error).__name__}: {error}",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    if entry.name in _REGISTRY:
        return
    if isinstance(loaded, type) and issubclass(loaded, Tokenizer):
        register_tokenizer(entry.name)(loaded)
    else:
        warnings.warn(
            f"tokenizer plugin {entry.name!r} from distribution {distribution!r} points to {loaded!r}, "
            "which is not a Tokenizer subclass",
            RuntimeWarning,
            stacklevel=3,
        )


def tokenizer_class(name: str) -> type[Tokenizer]:
    """The class registered under ``name``, loading a matching entry point if needed."""
    if name not in _REGISTRY:
        for entry in _plugin_entry_points():
            if entry.name == name:
                _load_entry_point(entry)
                break
    if name not in _REGISTRY:
        raise ValueError(f"unknown tokenizer {name!r}; available: {', '.join(list_tokenizers()) or 'none'}")
    return _REGISTRY[name]


def create_tokenizer(name: str, **config: Any) -> Tokenizer:
    """Build the tokenizer registered as ``name`` with constructor arguments ``config``."""
    cls = tokenizer_class(name)
    try:
        return cls(**config)
    except TypeError as error:
        raise TypeError(f"bad arguments for tokenizer {name!r} ({cls.__qualname__}): {error}") from None


def tokenizer_from_spec(spec: dict[str, Any], argument: str = "tokenizer") -> Tokenizer:
    """``{"name": registry name, **constructor arguments}`` (a recipe's YAML mapping) to a tokenizer."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{argument} must be a mapping with a 'name' key, got {spec!r}")
    options = dict(spec)
    return create_tokenizer(options.pop("name"), **options)


def list_tokenizers() -> list[str]:
    """Names of built-in and entry-point tokenizers, sorted (entry points are not imported)."""
    return sorted(set(_REGISTRY) | {entry.name for entry in _plugin_entry_points()})


def describe_tokenizers() -> list[tuple[str, str, str]]:
    """``(name, source, summary)`` per tokenizer; entry points are loaded to read their docs."""
    rows = []
    for name in list_tokenizers():
        try:
            cls = tokenizer_class(name)
        except ValueError:
            rows.append((name, "entry point (failed to load)", ""))
            continue
        module = cls.__module__
        source = "built-in" if module.startswith("modal_tf.") else f"plugin ({module})"
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        rows.append((name, source, summary))
    return rows


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild any registered tokenizer from its ``state_dict()``."""
    if not isinstance(state, dict) or not isinstance(state.get("name"), str):
        raise ValueError(f"tokenizer state must be a dict with a str 'name', got {state!r:.200}")
    return tokenizer_class(state["name"]).from_state_dict(state)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer saved with ``Tokenizer.save``."""
    return tokenizer_from_state(read_state(path))
