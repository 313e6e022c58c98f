"""The tokenizer contract, the registry, entry-point plugins and the bytes tokenizer."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from modal_tf.testing import TokenizerContractError, check_tokenizer
from modal_tf.tokenizers import (
    ByteTokenizer,
    DiscreteTokenizer,
    TokenBatch,
    Tokens,
    create_tokenizer,
    list_tokenizers,
    load_tokenizer,
    register_tokenizer,
)
from modal_tf.tokenizers import registry as registry_module

SAMPLES = ["", "Tom hit Jerry.", "naïve café — 東京 🤖", "e\u0301 combining", "x" * 50]


def test_bytes_tokenizer_passes_the_conformance_kit() -> None:
    check_tokenizer(ByteTokenizer(), SAMPLES)


def test_bytes_round_trip_and_coordinates() -> None:
    tokenizer = ByteTokenizer()
    tokens = tokenizer.encode("東京")
    assert tokens.values.tolist() == list("東京".encode())
    assert tokens.coords[:, 0].tolist() == list(range(6))
    assert tokenizer.decode(tokens.values) == "東京"
    assert tokenizer.decode([tokenizer.bos_id, 104, 105, tokenizer.eos_id, tokenizer.pad_id]) == "hi"


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (b"bytes", TypeError, "expects text of type str, got bytes"),
        (42, TypeError, "got int"),
        ("bad \ud800 surrogate", ValueError, "lone surrogate"),
    ],
)
def test_bytes_tokenizer_rejects_bad_input(raw: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ByteTokenizer().encode(raw)


def test_bytes_decode_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 259\), got 300"):
        ByteTokenizer().decode([104, 300])
    with pytest.raises(TypeError, match="ids must be ints"):
        ByteTokenizer().decode([1.5])  # type: ignore[list-item]


def test_max_length_rejects_or_truncates() -> None:
    with pytest.raises(ValueError, match="more than max_length=4"):
        ByteTokenizer(max_length=4).encode("hello")
    with pytest.warns(UserWarning, match="truncated"):
        assert ByteTokenizer(max_length=4, truncate=True).encode("hello").values.shape == (4,)


def test_state_is_json_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    ByteTokenizer(max_length=9).save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, ByteTokenizer) and loaded.max_length == 9
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "missing.json")


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(ValueError, match=r"unknown tokenizer 'nope'; available: .*bytes"):
        create_tokenizer("nope")


def test_registering_a_taken_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_tokenizer("bytes")
        class Impostor(ByteTokenizer):
            pass


def test_bad_constructor_arguments_name_the_tokenizer() -> None:
    with pytest.raises(TypeError, match="bad arguments for tokenizer 'bytes'"):
        create_tokenizer("bytes", vocab=3)


def test_conformance_kit_catches_a_broken_tokenizer() -> None:
    @register_tokenizer("test_broken_coords")
    class BrokenCoords(ByteTokenizer):
        def encode(self, raw: object) -> Tokens:
            tokens = super().encode(raw)
            return Tokens(tokens.values, torch.zeros(tokens.values.shape[0], 2, dtype=torch.long))

    with pytest.raises(TokenizerContractError, match=r"coords must be int64 of shape \(\d+, 1\)"):
        check_tokenizer(BrokenCoords(), SAMPLES)

    class Nondeterministic(ByteTokenizer):
        calls = 0

        def encode(self, raw: object) -> Tokens:
            Nondeterministic.calls += 1
            tokens = super().encode(raw)
            return Tokens(tokens.values.roll(Nondeterministic.calls), tokens.coords)

    register_tokenizer("test_nondeterministic")(Nondeterministic)
    with pytest.raises(TokenizerContractError, match="not deterministic"):
        check_tokenizer(Nondeterministic(), ["abc", "defg"])


def _make_distribution(root: Path, name: str, module_source: str, entry: str) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on a sys.path folder."""
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[modal_tf.tokenizers]\n{entry}\n")


def test_entry_point_plugin_is_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_distribution(
        tmp_path,
        "reverse_plugin",
        """
        from modal_tf.tokenizers import ByteTokenizer

        class ReverseBytes(ByteTokenizer):
            '''Bytes in reverse order (a throw-away plugin for tests).'''

            def encode(self, raw):
                tokens = super().encode(raw[::-1])
                return tokens

            def decode(self, ids):
                return super().decode(ids)[::-1]
        """,
        "reverse_bytes = reverse_plugin:ReverseBytes",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "reverse_bytes" in list_tokenizers()
    assert "reverse_plugin" not in sys.modules  # listing does not import plugins
    tokenizer = create_tokenizer("reverse_bytes")
    assert type(tokenizer).__name__ == "ReverseBytes"
    assert tokenizer.encode("ab").values.tolist() == [98, 97]
    check_tokenizer(tokenizer, SAMPLES)
    registry_module._REGISTRY.pop("reverse_bytes")


def test_broken_plugin_warns_with_its_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_distribution(tmp_path, "broken_plugin", "raise ImportError('no such dependency')", "broken = broken_plugin:X")
    monkeypatch.syspath_prepend(str(tmp_path))
    with (
        pytest.warns(RuntimeWarning, match="'broken' from distribution 'broken_plugin' failed to load"),
        pytest.raises(ValueError, match="unknown tokenizer 'broken'"),
    ):
        create_tokenizer("broken")
    assert "bytes" in list_tokenizers()  # the rest of the registry still works


def test_tokenizers_hold_no_parameters() -> None:
    for name in ("bytes",):
        tokenizer = create_tokenizer(name)
        assert not isinstance(tokenizer, torch.nn.Module)
        assert isinstance(tokenizer, DiscreteTokenizer)


def test_token_batch_moves_every_tensor_and_stays_a_token_batch() -> None:
    batch = ByteTokenizer().collate([ByteTokenizer().encode("ab"), ByteTokenizer().encode("abc")])
    moved = batch.to(torch.device("meta"))
    assert isinstance(moved, TokenBatch)
    assert all(part.device.type == "meta" for part in moved)
    assert [part.shape for part in moved] == [part.shape for part in batch]
