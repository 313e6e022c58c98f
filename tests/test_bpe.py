"""The byte-level BPE tokenizer: contract, lossless round trip, fitting, foreign tokenizer.json files, bad input."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from pydoc_data.topics import topics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from modal_tf.testing import check_tokenizer
from modal_tf.tokenizers.bpe import BPETokenizer
from modal_tf.tokenizers.registry import create_tokenizer, load_tokenizer, tokenizer_from_state

CORPUS = [topics[key] for key in sorted(topics)[:8]]  # ~36k characters of Python docs
TRICKY = [
    "",
    "Tom hit Jerry.",
    "naïve café — 東京 🤖👩‍👩‍👧",
    "e\u0301 combining a\u0308\u0301",
    "  spaces   and\ttabs\t\t\n\n\r\nnewlines \n",
    "<pad><bos><eos> written as text",
    "\x00\x7f\u2028\ufeff",
]
VALID_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)  # utf-8 excludes lone surrogates


@pytest.fixture(scope="module")
def fitted() -> BPETokenizer:
    tokenizer = BPETokenizer(vocab_size=512)
    tokenizer.fit(CORPUS)
    return tokenizer


@pytest.fixture
def gpt2_style_file(tmp_path: Path) -> Path:
    """A small GPT-2-style tokenizer.json: byte-level BPE whose only special token is <|endoftext|>."""
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS[:3], trainer=trainer)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_passes_the_conformance_kit() -> None:
    tokenizer = BPETokenizer(vocab_size=300)
    assert tokenizer.requires_fit
    check_tokenizer(tokenizer, TRICKY + CORPUS[:2])
    assert not tokenizer.requires_fit


def test_fit_learns_the_requested_vocabulary(fitted: BPETokenizer) -> None:
    assert fitted.vocab_size == 512
    assert (fitted.pad_id, fitted.bos_id, fitted.eos_id) == (0, 1, 2)
    tokens = fitted.encode(CORPUS[0])
    assert tokens.values.dtype == torch.int64 and tokens.coords.tolist() == [[i] for i in range(len(tokens.values))]
    # Merges compress: far fewer tokens than UTF-8 bytes, and no special ids inside content.
    assert len(tokens.values) < 0.5 * len(CORPUS[0].encode())
    assert not set(tokens.values.tolist()) & {0, 1, 2}


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_on_tricky_text(fitted: BPETokenizer, text: str) -> None:
    ids = fitted.encode(text).values
    assert fitted.decode(ids) == text
    assert not set(ids.tolist()) & {fitted.pad_id, fitted.bos_id, fitted.eos_id}  # "<eos>" text stays text


@settings(max_examples=50, deadline=None)
@given(text=VALID_TEXT)
def test_round_trip_is_lossless_on_any_unicode(fitted: BPETokenizer, text: str) -> None:
    assert fitted.decode(fitted.encode(text).values) == text


@settings(max_examples=20, deadline=None)
@given(texts=st.lists(VALID_TEXT, max_size=6))
def test_encode_batch_equals_encode(fitted: BPETokenizer, texts: list[str]) -> None:
    batch = fitted.encode_batch(texts)
    assert len(batch) == len(texts)
    for text, tokens in zip(texts, batch, strict=True):
        single = fitted.encode(text)
        assert torch.equal(tokens.values, single.values) and torch.equal(tokens.coords, single.coords)


def test_lone_surrogates_raise(fitted: BPETokenizer) -> None:
    with pytest.raises(ValueError, match=r"text is not valid Unicode \(lone surrogate at index 4\)"):
        fitted.encode("bad \ud800 surrogate")
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        fitted.encode_batch(["fine", "\udfff"])
    with pytest.raises(ValueError, match=r"samples\[1\] is not valid Unicode"):
        BPETokenizer(vocab_size=300).fit(["fine", "x\ud800"])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: t.encode(b"bytes"), TypeError, "text must be text of type str, got bytes"),
        (lambda t: t.encode(None), TypeError, "got NoneType"),
        (lambda t: t.encode_batch("one string"), TypeError, "texts must be a list of str, got str"),
        (lambda t: t.encode_batch(["ok", 3]), TypeError, r"texts\[1\] must be text of type str, got int"),
        (lambda t: t.decode([5, 512]), ValueError, r"ids must lie in \[0, 512\), got 512"),
        (lambda t: t.decode([-1]), ValueError, "ids must lie in"),
        (lambda t: t.decode([1.5]), TypeError, "ids must be ints"),
    ],
)
def test_bad_input_is_rejected(
    fitted: BPETokenizer, call: Callable[[BPETokenizer], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(fitted)


def test_fit_rejects_non_text_samples() -> None:
    with pytest.raises(TypeError, match="samples must be an iterable of str, got str"):
        BPETokenizer(vocab_size=300).fit("a single string")
    with pytest.raises(TypeError, match=r"samples\[0\] must be text of type str, got bytes"):
        BPETokenizer(vocab_size=300).fit([b"bytes"])  # type: ignore[list-item]


def test_decode_drops_specials(fitted: BPETokenizer) -> None:
    ids = fitted.encode("hi").values.tolist()
    assert fitted.decode([fitted.bos_id, *ids, fitted.eos_id, fitted.pad_id]) == "hi"
    assert fitted.decode(torch.tensor([fitted.bos_id, *ids])) == "hi"
    # A model may sample a cut UTF-8 sequence: it decodes to U+FFFD instead of failing.
    kanji = fitted.encode("東").values  # three byte tokens: the docs corpus never merged them
    assert len(kanji) == 3 and fitted.decode(kanji[:2]) == "\ufffd"


def test_max_length_rejects_or_truncates() -> None:
    with pytest.raises(ValueError, match="more than max_length=3"):
        _fit(max_length=3).encode("abcdefgh")
    with pytest.warns(UserWarning, match="truncated to max_length=3"):
        tokens = _fit(max_length=3, truncate=True).encode_batch(["abcdefgh"])[0]
    assert tokens.values.shape == (3,) and tokens.coords.shape == (3, 1)


def _fit(**config: object) -> BPETokenizer:
    tokenizer = BPETokenizer(vocab_size=260, **config)  # type: ignore[arg-type]
    tokenizer.fit(["abc"])
    return tokenizer


def test_unfitted_tokenizer_says_what_to_do(tmp_path: Path) -> None:
    tokenizer = BPETokenizer()
    assert tokenizer.requires_fit and tokenizer.fitted_state() == {}
    for call in (
        lambda: tokenizer.encode("x"),
        lambda: tokenizer.vocab_size,
        lambda: tokenizer.save_hf(tmp_path / "t"),
    ):
        with pytest.raises(RuntimeError, match=r"call fit\(\) first or load a tokenizer file"):
            call()
    assert pickle.loads(pickle.dumps(tokenizer)).requires_fit


def test_fit_is_deterministic() -> None:
    first, second, other = BPETokenizer(vocab_size=400), BPETokenizer(vocab_size=400), BPETokenizer(vocab_size=400)
    first.fit(CORPUS)
    second.fit(iter(CORPUS))  # a one-shot iterator works as well as a list
    other.fit(CORPUS[::-1][:4])
    assert first.fitted_state() == second.fitted_state()
    assert first.fitted_state() != other.fitted_state()


def test_pickle_and_state_keep_specials_as_text(fitted: BPETokenizer, tmp_path: Path) -> None:
    text = "x <eos> y"
    expected = fitted.encode(text).values
    fitted.save(tmp_path / "bpe.json")
    for copy in (pickle.loads(pickle.dumps(fitted)), load_tokenizer(tmp_path / "bpe.json")):
        assert isinstance(copy, BPETokenizer)
        assert torch.equal(copy.encode(text).values, expected) and copy.decode(expected) == text


def test_save_hf_writes_a_standard_tokenizer_json(fitted: BPETokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    fitted.save_hf(path)
    assert HFTokenizer.from_file(str(path)).encode(CORPUS[1]).ids == fitted.encode(CORPUS[1]).values.tolist()
    reloaded = BPETokenizer(tokenizer_file=path)
    assert not reloaded.requires_fit and reloaded.vocab_size == fitted.vocab_size
    assert torch.equal(reloaded.encode(CORPUS[1]).values, fitted.encode(CORPUS[1]).values)


def test_foreign_gpt2_style_file_is_used_unchanged(gpt2_style_file: Path) -> None:
    reference = HFTokenizer.from_file(str(gpt2_style_file))
    size = reference.get_vocab_size()
    tokenizer = BPETokenizer(tokenizer_file=str(gpt2_style_file), eos_token="<|endoftext|>")
    # eos is the file's own token; the missing pad and bos are appended in that order.
    assert tokenizer.eos_id == reference.token_to_id("<|endoftext|>") == 0
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.vocab_size) == (size, size + 1, size + 2)
    text = CORPUS[4][:500]
    assert tokenizer.encode(text).values.tolist() == reference.encode(text).ids
    check_tokenizer(tokenizer, [*TRICKY, "<|endoftext|> as text"])

    state = tokenizer.state_dict()
    gpt2_style_file.unlink()  # the state carries the file's contents: the path is not needed any more
    copy = tokenizer_from_state(state)
    assert copy.config()["tokenizer_file"] is None and torch.equal(
        copy.encode(text).values, tokenizer.encode(text).values
    )
    with pytest.raises(FileNotFoundError, match="tokenizer_file not found"):
        BPETokenizer(tokenizer_file=gpt2_style_file)


def test_corrupt_tokenizer_file_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    for content, message in ((b"{not json", "not a valid Hugging Face tokenizer.json"), (b"\xff\xfe", "not UTF-8")):
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message):
            BPETokenizer(tokenizer_file=path)
    with pytest.raises(ValueError, match="must hold a str 'tokenizer_json'"):
        BPETokenizer().load_fitted_state({"vocab": 3})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"vocab_size": 258}, "vocab_size must be an int >= 259"),
        ({"max_length": 0}, "max_length must be a positive int or None"),
        ({"pad_token": "<eos>"}, "must differ"),
        ({"bos_token": ""}, "bos_token must be a non-empty str"),
    ],
)
def test_bad_config_is_rejected(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_tokenizer("bpe", **config)


def test_registered_as_bpe() -> None:
    tokenizer = create_tokenizer("bpe", vocab_size=300)
    assert isinstance(tokenizer, BPETokenizer) and tokenizer.registry_name == "bpe" and tokenizer.axes == ("time",)
