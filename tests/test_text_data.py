"""Embedded text data and the loaders of users' own text, on files fabricated here."""

from __future__ import annotations

from pathlib import Path

import pytest

from modal_tf.data import download, numbers, pydoc_corpus, text_files


@pytest.mark.parametrize(
    ("number", "english", "chinese"),
    [
        (0, "zero", "零"),
        (12, "twelve", "十二"),
        (105, "one hundred and five", "一百零五"),
        (110, "one hundred and ten", "一百一十"),
        (312, "three hundred and twelve", "三百一十二"),
        (1010, "one thousand and ten", "一千零一十"),
        (10086, "ten thousand and eighty-six", "一万零八十六"),
        (110000, "one hundred and ten thousand", "十一万"),
        (200305, "two hundred thousand three hundred and five", "二十万零三百零五"),
    ],
)
def test_numbers_in_words_and_chinese_numerals(number: int, english: str, chinese: str) -> None:
    assert numbers.english(number) == english
    assert numbers.chinese(number) == chinese


def test_number_pairs_are_seeded_and_bounded() -> None:
    assert numbers.number_pairs(50, seed=3) == numbers.number_pairs(50, seed=3)
    assert numbers.number_pairs(50, seed=3) != numbers.number_pairs(50, seed=4)
    with pytest.raises(ValueError, match="number must be in"):
        numbers.chinese(10**8)


def test_pydoc_split_is_by_topic_and_disjoint() -> None:
    split = pydoc_corpus.corpus_split()
    names = [set(split[name]) for name in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(len(part) for part in names) == len(pydoc_corpus.topics())
    assert len(pydoc_corpus.corpus_text("val")) > 10_000
    with pytest.raises(ValueError, match="split must be"):
        pydoc_corpus.corpus_text("dev")


def test_paragraph_classification_covers_every_group() -> None:
    samples = pydoc_corpus.paragraph_samples()
    for split in ("train", "test"):
        assert {label for _, label in samples[split]} == set(range(len(pydoc_corpus.GROUPS)))


def test_text_files_from_folder_and_glob(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "b.txt").write_text("beta")
    assert text_files.read_text_files(str(tmp_path)) == ["alpha", "beta"]
    assert text_files.read_text_files(str(tmp_path / "*.txt")) == ["alpha"]
    with pytest.raises(FileNotFoundError, match="no text files match"):
        text_files.read_text_files(str(tmp_path / "*.md"))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        text_files.read_text_files(str(tmp_path / "bad.txt"))


def test_pairs_tsv(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("one\t一\n\ntwo\t二\n")
    assert text_files.read_pairs_tsv(path) == [("one", "一"), ("two", "二")]
    path.write_text("one\t一\nbroken line\n")
    with pytest.raises(ValueError, match=r"pairs.tsv:2: expected 'source<TAB>target'"):
        text_files.read_pairs_tsv(path)
    with pytest.raises(FileNotFoundError):
        text_files.read_pairs_tsv(tmp_path / "missing.tsv")


def test_labelled_csv(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"Hello, world",greeting\nbye,farewell\n')
    assert text_files.read_labelled_csv(path) == [("Hello, world", "greeting"), ("bye", "farewell")]
    path.write_text("sentence,label\nhi,x\n")
    with pytest.raises(ValueError, match="header must contain 'text' and 'label'"):
        text_files.read_labelled_csv(path)


def test_fetch_downloads_once_verifies_and_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    source = tmp_path / "remote.txt"
    source.write_text("to be or not to be")
    path = download.fetch(source.as_uri(), "copy.txt", size=18)
    assert path.read_text() == "to be or not to be"
    source.unlink()
    assert download.fetch(source.as_uri(), "copy.txt", size=18) == path  # served from the cache
    with pytest.raises(ConnectionError, match=r"could not download .* copy the file to"):
        download.fetch(source.as_uri(), "other.txt")
    source.write_text("short")
    with pytest.raises(ValueError, match="size 5 bytes, expected 18"):
        download.fetch(source.as_uri(), "third.txt", size=18)
    assert not (tmp_path / "cache" / "third.txt").exists()


def test_tiny_shakespeare_offline_error_names_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(text_files, "TINY_SHAKESPEARE_URL", (tmp_path / "absent.txt").as_uri())
    with pytest.raises(ConnectionError, match=r"tinyshakespeare\.txt"):
        text_files.tiny_shakespeare()
    (tmp_path / "tinyshakespeare.txt").write_text("x" * text_files.TINY_SHAKESPEARE_SIZE)
    assert len(text_files.tiny_shakespeare()) == text_files.TINY_SHAKESPEARE_SIZE  # a cached copy needs no network
