"""Users' own text: a glob of ``.txt`` files, a TSV of pairs, a CSV of labelled texts; and TinyShakespeare."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

from modal_tf.data.download import fetch

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SIZE = 1_115_394


def tiny_shakespeare() -> str:
    """The TinyShakespeare corpus (downloaded once into the cache, size-verified)."""
    return fetch(TINY_SHAKESPEARE_URL, "tinyshakespeare.txt", size=TINY_SHAKESPEARE_SIZE).read_text(encoding="utf-8")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from None


def read_text_files(pattern: str) -> list[str]:
    """Texts of the files matching a glob (``data/*.txt``, ``**`` allowed) or inside a folder (``*.txt``)."""
    root = Path(pattern)
    paths = (
        sorted(root.glob("**/*.txt")) if root.is_dir() else sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    )
    paths = [path for path in paths if path.is_file()]
    if not paths:
        raise FileNotFoundError(f"no text files match {pattern!r}")
    return [_read(path) for path in paths]


def read_pairs_tsv(path: str | Path) -> list[tuple[str, str]]:
    """``source<TAB>target`` lines; blank lines are skipped; anything else is an error with its line number."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"pairs file not found: {file}")
    pairs = []
    for number, line in enumerate(_read(file).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise ValueError(f"{file}:{number}: expected 'source<TAB>target', got {line[:80]!r}")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise ValueError(f"{file} holds no pairs")
    return pairs


def read_labelled_csv(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> list[tuple[str, str]]:
    """``(text, label)`` rows of a CSV with a header naming both columns."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"labelled CSV not found: {file}")
    with file.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        missing = [column for column in (text_column, label_column) if column not in header]
        if missing:
            raise ValueError(f"{file}: header must contain {text_column!r} and {label_column!r}, got {header}")
        rows = []
        for number, row in enumerate(reader, start=2):
            text, label = row[text_column], row[label_column]
            if not text or not label:
                raise ValueError(f"{file}:{number}: empty {text_column if not text else label_column!r}")
            rows.append((text, label))
    if not rows:
        raise ValueError(f"{file} holds no rows")
    return rows
