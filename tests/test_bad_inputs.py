"""Every registered tokenizer and the CLI, fed a battery of bad inputs: each gets a ValueError, TypeError or
FileNotFoundError whose message names what was expected and what came — never a bare torch error or a hang."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modal_tf.cli import main
from modal_tf.tokenizers import Audio, create_tokenizer, list_tokenizers

RNG = np.random.default_rng(0)
CHUNKS = [RNG.uniform(-1, 1, (4, 2)).astype(np.float32) for _ in range(20)]
IMAGE = torch.rand(3, 8, 8)
WAVE = Audio(torch.randn(4000) * 0.1, 8000)


def fitted(name: str, **config: Any) -> Any:
    tokenizer = create_tokenizer(name, **config)
    if name == "bpe":
        tokenizer.fit(["hello world", "attention is all you need"] * 20)
    elif name.startswith("action"):
        tokenizer.fit(CHUNKS)
    elif tokenizer.requires_fit:
        tokenizer.fit([IMAGE, torch.rand(3, 16, 8)])
    return tokenizer


def nan_image() -> torch.Tensor:
    image = IMAGE.clone()
    image[0, 1, 1] = float("nan")
    return image


IMAGE_CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("wrong channels", torch.rand(1, 8, 8), ValueError, r"channel"),
    ("wrong rank", torch.rand(2, 3, 8, 8), ValueError, r"(rank|dim|shape)"),
    ("bool dtype", torch.ones(3, 8, 8, dtype=torch.bool), TypeError, r"bool"),
    ("NaN pixel", nan_image(), ValueError, r"(NaN|finite)"),
    ("empty", torch.rand(3, 0, 8), ValueError, r"empty|0"),
    ("smaller than a patch", torch.rand(3, 2, 2), ValueError, r"patch"),
    ("not an image", "cat.png", TypeError, r"str"),
]
AUDIO_CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("bare waveform", torch.randn(4000), TypeError, r"sample.rate|Audio"),
    ("NaN samples", Audio(torch.full((4000,), float("nan")), 8000), ValueError, r"(NaN|finite)"),
    ("empty", Audio(torch.zeros(0), 8000), ValueError, r"(empty|samples|short)"),
    ("too short", Audio(torch.zeros(10), 8000), ValueError, r"(short|samples|n_fft)"),
    ("3-D", Audio(torch.zeros(1, 1, 4000), 8000), ValueError, r"(dim|rank|shape)"),
    ("int64 PCM", Audio(torch.zeros(4000, dtype=torch.int64), 8000), TypeError, r"int64"),
    ("not audio", "clip.wav", TypeError, r"str"),
]
ACTION_CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("NaN action", np.full((4, 2), np.nan, dtype=np.float32), ValueError, r"(NaN|finite)"),
    ("wrong action dim", np.zeros((4, 3), dtype=np.float32), ValueError, r"(dim|3).*2|2.*3"),
    ("wrong rank", np.zeros(2, dtype=np.float32), ValueError, r"(rank|shape|2-D|\(steps, dims\))"),
    ("empty chunk", np.zeros((0, 2), dtype=np.float32), ValueError, r"empty|0"),
    ("strings", [["a", "b"]], TypeError, r"(str|dtype|<U)"),
]
TEXT_CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("not str", 42, TypeError, r"str.*int|int"),
    ("bytes", b"abc", TypeError, r"bytes"),
    ("lone surrogate", "a\ud800b", ValueError, r"surrogate"),
]

ENCODE_CASES: dict[str, tuple[Callable[[], Any], list[tuple[str, Any, type[Exception], str]]]] = {
    "bytes": (lambda: fitted("bytes"), TEXT_CASES),
    "bpe": (lambda: fitted("bpe", vocab_size=300), TEXT_CASES),
    "patch": (lambda: fitted("patch", patch_size=4, channels=3), IMAGE_CASES),
    "conv_patch": (lambda: fitted("conv_patch", patch_size=4, channels=3), IMAGE_CASES),
    "spectrogram": (lambda: fitted("spectrogram", sample_rate=8000, n_fft=256, hop_length=80, n_mels=16), AUDIO_CASES),
    "whisper_frames": (
        lambda: fitted("whisper_frames", sample_rate=8000, n_fft=256, hop_length=80, n_mels=16),
        AUDIO_CASES,
    ),
    "action_bins": (lambda: fitted("action_bins"), ACTION_CASES),
    "action_mulaw": (lambda: fitted("action_mulaw"), ACTION_CASES),
    "action_fast": (lambda: fitted("action_fast", vocab_size=300), ACTION_CASES),
    "vector": (
        lambda: fitted("vector", dims=2),
        [
            ("wrong dims", torch.zeros(3), ValueError, r"\(2,\).*\(3,\)"),
            ("NaN", torch.tensor([0.0, float("nan")]), ValueError, r"NaN"),
            ("empty", torch.zeros(0, 2), ValueError, r"empty"),
            ("not numbers", "up", TypeError, r"str"),
        ],
    ),
}
CASES = [
    pytest.param(name, label, raw, error, pattern, id=f"{name}-{label}")
    for name, (_, battery) in ENCODE_CASES.items()
    for label, raw, error, pattern in battery
]


def test_every_registered_tokenizer_is_in_the_battery() -> None:
    registered = set(list_tokenizers())  # built-ins and entry points; other tests register "test_*" names
    assert {name for name in registered - set(ENCODE_CASES) if not name.startswith("test_")} == set()


@pytest.mark.parametrize(("name", "label", "raw", "error", "pattern"), CASES)
def test_bad_input_to_encode(name: str, label: str, raw: Any, error: type[Exception], pattern: str) -> None:
    tokenizer = ENCODE_CASES[name][0]()
    with pytest.raises(error, match=pattern):
        tokenizer.encode(raw)


DISCRETE = ["bytes", "bpe", "action_bins", "action_mulaw", "action_fast"]


@pytest.mark.parametrize("name", DISCRETE)
@pytest.mark.parametrize("ids", [[-1], [10**6]], ids=["negative", "too large"])
def test_out_of_range_ids_at_decode(name: str, ids: list[int]) -> None:
    tokenizer = ENCODE_CASES[name][0]()
    with pytest.raises(ValueError, match=r"\[0, \d+\)|range|invalid|unknown"):
        tokenizer.decode(ids)


@pytest.mark.parametrize("name", ["bpe", "action_bins", "action_fast", "patch"])
def test_unfitted_tokenizer_says_so(name: str) -> None:
    config = {"patch": {"patch_size": 4, "channels": 3}}.get(name, {})
    raw = {"bpe": "hello", "patch": IMAGE}.get(name, CHUNKS[0])
    with pytest.raises((ValueError, RuntimeError), match=r"fit"):
        create_tokenizer(name, **config).encode(raw)


def test_unknown_tokenizer_name_in_a_recipe(tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[1] / "recipes/text/who_did_it.yaml"
    with pytest.raises(ValueError, match=r"unknown tokenizer 'nope'; available: .*bytes"):
        main(
            [
                "fit",
                "--config",
                str(recipe),
                "--data.init_args.tokenizer={name: nope}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ]
        )


def test_malformed_yaml_and_missing_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n  shape: encoder_only\n")
    with pytest.raises(ValueError, match=r"--config .*bad\.yaml: not valid YAML"):
        main(["fit", "--config", str(bad)])
    with pytest.raises(FileNotFoundError, match=r"--config .*missing\.yaml: file not found"):
        main(["fit", f"--config={tmp_path / 'missing.yaml'}"])


def test_missing_and_corrupt_checkpoint_through_the_cli(tmp_path: Path) -> None:
    recipe = str(Path(__file__).resolve().parents[1] / "recipes/text/who_did_it.yaml")
    args = [
        "test",
        "--config",
        recipe,
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        main([*args, f"--ckpt_path={tmp_path / 'missing.ckpt'}"])
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        main([*args, f"--ckpt_path={tmp_path / 'corrupt.ckpt'}"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        main(["export", f"--ckpt={tmp_path / 'missing.ckpt'}", f"--out={tmp_path / 'out'}"])
