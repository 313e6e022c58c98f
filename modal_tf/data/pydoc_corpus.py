"""A real English corpus every Python ships: the reference documentation in ``pydoc_data.topics``.

~465 k characters in 79 topics (PSF licence). Splits are by *topic*, so
validation and test text is unseen prose, not neighbouring sentences of the
training text: a topic goes to ``test`` when ``crc32(name) % 10 == 0``, to
``val`` when it is 1, else to ``train`` (deterministic across Python versions
and machines; the exact topic lists are in ``corpus_split``).

The classification task labels each paragraph with the *group* of its topic
(statements, expressions, lexical, data model, runtime & built-in types), and
splits paragraphs (not topics) by ``crc32(paragraph) % 10`` the same way,
because a topic split would leave some groups without test topics.
"""

from __future__ import annotations

import zlib

GROUPS: dict[str, list[str]] = {
    "statements": (
        "assert assignment async augassign break class compound continue del else for function global if "
        "import nonlocal pass raise return try while with yield"
    ).split(),
    "expressions": (
        "atom-identifiers atom-literals attribute-references await binary bitwise booleans calls comparisons "
        "conversions dict exprlists in lambda lists operator-summary power shifting slicings subscriptions unary"
    ).split(),
    "lexical": "identifiers integers floating imaginary numbers strings formatstrings id-classes".split(),
    "data model": (
        "attribute-access callable-types context-managers customization numeric-types sequence-types "
        "specialattrs specialnames types objects"
    ).split(),
    "runtime": (
        "bltin-code-objects bltin-ellipsis-object bltin-null-object bltin-type-objects debugger dynamic-features "
        "exceptions execmodel naming string-methods truth typesfunctions typesmapping typesmethods typesmodules "
        "typesseq typesseq-mutable"
    ).split(),
}
MIN_PARAGRAPH = 80


def topics() -> dict[str, str]:
    """Topic name to text, from the running Python's own ``pydoc_data``."""
    from pydoc_data.topics import topics as table

    return dict(sorted(table.items()))


def _bucket(text: str) -> str:
    remainder = zlib.crc32(text.encode("utf-8")) % 10
    return "test" if remainder == 0 else "val" if remainder == 1 else "train"


def corpus_split() -> dict[str, list[str]]:
    """Topic names per split (``train``/``val``/``test``)."""
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name in topics():
        split[_bucket(name)].append(name)
    return split


def corpus_text(split: str) -> str:
    """The concatenated text of one split's topics, separated by blank lines."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    table = topics()
    return "\n\n".join(table[name] for name in corpus_split()[split])


def topic_group(name: str) -> str:
    """The group a topic belongs to; unknown topics (newer Pythons) go to ``runtime``."""
    for group, names in GROUPS.items():
        if name in names:
            return group
    return "runtime"


def paragraph_samples(max_chars: int = 400) -> dict[str, list[tuple[str, int]]]:
    """``(paragraph, group index)`` per split; paragraphs shorter than 80 characters are dropped."""
    names = list(GROUPS)
    split: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for topic, text in topics().items():
        label = names.index(topic_group(topic))
        for paragraph in text.split("\n\n"):
            paragraph = " ".join(paragraph.split())
            if len(paragraph) >= MIN_PARAGRAPH:
                split[_bucket(paragraph)].append((paragraph[:max_chars], label))
    return split
