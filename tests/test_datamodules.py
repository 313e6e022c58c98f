"""DataModules build their splits, fit tokenizers on train only, and batch with masks — on embedded data
and on users' files fabricated here in the real formats (never downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

from modal_tf.datamodules.audio import AudioClassification, KeypadKeys, KeypadSequences
from modal_tf.datamodules.text import TextClassification, TextLM, TextPairs
from modal_tf.datamodules.vision import ImageClassification, ShapeCaptions


def first_batch(datamodule: Any, split: str = "train") -> dict[str, Any]:
    datamodule.setup("fit")
    loader = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader}[split]()
    return next(iter(loader))


def test_text_lm_windows_and_bytes_per_token() -> None:
    datamodule = TextLM(block_size=32, batch_size=4, tokenizer={"name": "bpe", "vocab_size": 400})
    batch = first_batch(datamodule)
    assert batch["inputs"] == {}
    assert batch["target"].values.shape == (4, 33)
    assert datamodule.task is not None and datamodule.task.target is not None
    assert 1.0 < datamodule.bytes_per_token["train"] < 8.0
    val_text = "".join(sample["target"] for sample in datamodule.splits["val"])  # type: ignore[index]
    train_text = "".join(sample["target"] for sample in datamodule.splits["train"])  # type: ignore[index]
    assert val_text not in train_text


def test_text_lm_reads_a_users_folder(tmp_path: Path) -> None:
    for index in range(4):
        (tmp_path / f"doc{index}.txt").write_text(f"document {index} " * 200)
    datamodule = TextLM(source=str(tmp_path), block_size=16, batch_size=2, tokenizer={"name": "bytes"})
    assert first_batch(datamodule)["target"].values.shape == (2, 17)
    assert [sample["target"][:10] for sample in datamodule.splits["test"]] == ["document 3"]  # type: ignore[index]


def test_text_pairs_numbers_hold_out_test_numbers() -> None:
    datamodule = TextPairs(num_train=300, num_eval=40, batch_size=8)
    batch = first_batch(datamodule)
    assert batch["target"].values[:, 0].eq(datamodule.task.target.bos_id).all()  # type: ignore[union-attr]
    splits = datamodule.splits
    assert splits is not None
    test_sources = {sample["inputs"]["text"] for sample in splits["test"]}
    assert not test_sources & {sample["inputs"]["text"] for sample in splits["train"]}


def test_text_pairs_and_classification_from_users_files(tmp_path: Path) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"w{index}\t{index}\n" for index in range(60)))
    pairs = TextPairs(source=str(tsv), batch_size=4)
    assert first_batch(pairs)["inputs"]["text"].values.shape[0] == 4
    csv = tmp_path / "labels.csv"
    csv.write_text("text,label\n" + "".join(f"text number {index},{'ab'[index % 2]}\n" for index in range(60)))
    classes = TextClassification(source=str(csv), batch_size=4, tokenizer={"name": "bytes"})
    assert first_batch(classes)["labels"].shape == (4,)
    assert classes.class_names == ["a", "b"]


def test_tokenizer_is_fitted_on_train_only() -> None:
    datamodule = TextClassification(batch_size=4, tokenizer={"name": "bpe", "vocab_size": 300})
    datamodule.setup("fit")
    assert datamodule.task is not None
    tokenizer = datamodule.task.inputs["text"]
    from modal_tf.tokenizers import BPETokenizer

    reference = BPETokenizer(vocab_size=300)
    reference.fit(sample["inputs"]["text"] for sample in datamodule.splits["train"])  # type: ignore[index]
    assert tokenizer.fitted_state() == reference.fitted_state()


def test_keypad_data_batches_with_masks() -> None:
    keys = first_batch(KeypadKeys(num_train=16, num_eval=8, batch_size=8, spec_augment={}))
    audio = keys["inputs"]["audio"]
    assert audio.values.dim() == 3 and audio.valid.any(1).all() and not audio.valid.all()  # unequal lengths
    sequences = first_batch(KeypadSequences(num_train=8, num_eval=4, batch_size=4))
    assert sequences["target"].values.shape[0] == 4


def test_spec_augment_only_touches_training_clips() -> None:
    datamodule = KeypadKeys(num_train=4, num_eval=4, batch_size=4, spec_augment={"num_time_masks": 3})
    datamodule.setup("fit")
    plain = KeypadKeys(num_train=4, num_eval=4, batch_size=4)
    plain.setup("fit")
    augmented_val = next(iter(datamodule.val_dataloader()))["inputs"]["audio"].values
    plain_val = next(iter(plain.val_dataloader()))["inputs"]["audio"].values
    assert torch.equal(augmented_val, plain_val)
    train_a = datamodule.make_dataset("train")[0]["inputs"]["audio"].values
    train_b = plain.make_dataset("train")[0]["inputs"]["audio"].values
    assert not torch.equal(train_a, train_b)
    assert torch.equal(train_a, datamodule.make_dataset("train")[0]["inputs"]["audio"].values)  # seeded


def _wav(path: Path, seconds: float = 0.3, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    time = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32), rate, subtype="PCM_16")


def test_audio_folder(tmp_path: Path) -> None:
    for label in ("no", "yes"):
        for index in range(10):
            _wav(tmp_path / label / f"{index}.wav")
    datamodule = AudioClassification(source=str(tmp_path), batch_size=4)
    batch = first_batch(datamodule)
    assert datamodule.class_names == ["no", "yes"] and batch["labels"].shape == (4,)


def fabricate_speech_commands(root: Path) -> None:
    """The real v0.02 layout: <label>/<speaker>_nohash_<n>.wav plus validation/testing lists."""
    folder = root / "SpeechCommands" / "speech_commands_v0.02"
    files = []
    for label in ("go", "stop"):
        for speaker in range(6):
            name = f"{label}/{speaker:08x}_nohash_0.wav"
            _wav(folder / name, seconds=0.2)
            files.append(name)
    (folder / "validation_list.txt").write_text("\n".join(files[0::6]) + "\n")
    (folder / "testing_list.txt").write_text("\n".join(files[1::6]) + "\n")


def test_speech_commands_layout(tmp_path: Path) -> None:
    fabricate_speech_commands(tmp_path)
    datamodule = AudioClassification(source="speech_commands", root=str(tmp_path), download=False, batch_size=2)
    batch = first_batch(datamodule)
    assert datamodule.class_names == ["go", "stop"]
    assert datamodule.splits is not None
    assert {split: len(items) for split, items in datamodule.splits.items()} == {"train": 8, "val": 2, "test": 2}
    assert batch["inputs"]["audio"].values.shape[0] == 2
    with pytest.raises(FileNotFoundError, match="Speech Commands not found"):
        AudioClassification(source="speech_commands", root=str(tmp_path / "empty"), download=False).setup("fit")


def test_digits_and_shapes_classification() -> None:
    digits = first_batch(ImageClassification(source="digits", batch_size=8))
    assert digits["inputs"]["image"].values.shape == (8, 16, 4)  # 4x4 patches of 2x2 pixels, 1 channel
    shapes = ImageClassification(
        source="shapes",
        num_train=40,
        num_eval=10,
        train_fraction=0.5,
        batch_size=4,
        tokenizer={"name": "patch", "patch_size": 4, "channels": 3},
    )
    first_batch(shapes)
    assert shapes.splits is not None and len(shapes.splits["train"]) == 20


def test_shape_captions() -> None:
    batch = first_batch(ShapeCaptions(num_train=8, num_eval=4, batch_size=4))
    assert batch["inputs"]["image"].values.shape == (4, 64, 48)
    assert batch["target"].valid.sum(1).min() > 5


def fabricate_cifar10(root: Path) -> None:
    """The real python-pickle layout with a few images per batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        # Python 2 wrote str keys; torchvision reads them back with encoding="latin1" as str
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3], "batch_label": name}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def test_cifar10_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import cifar

    fabricate_cifar10(tmp_path)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args: True)  # md5s belong to the real files
    datamodule = ImageClassification(
        source="cifar10",
        root=str(tmp_path),
        download=False,
        batch_size=2,
        tokenizer={"name": "patch", "patch_size": 4, "channels": 3},
    )
    batch = first_batch(datamodule)
    assert batch["inputs"]["image"].values.shape == (2, 64, 48)
    assert datamodule.class_names[0] == "airplane"
    assert datamodule.splits is not None and len(datamodule.splits["test"]) == 4


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for index in range(12):
            Image.fromarray(np.full((12, 12, 3), index * 10, dtype=np.uint8)).save(tmp_path / label / f"{index}.png")
    datamodule = ImageClassification(
        source=str(tmp_path), batch_size=4, tokenizer={"name": "patch", "patch_size": 4, "channels": 3}
    )
    assert first_batch(datamodule)["inputs"]["image"].values.shape == (4, 9, 48)
    assert datamodule.class_names == ["cats", "dogs"]


def test_missing_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageClassification(source=str(tmp_path / "nope")).setup("fit")
    with pytest.raises(FileNotFoundError, match="cifar10 not found"):
        ImageClassification(source="cifar10", root=str(tmp_path), download=False).setup("fit")
    with pytest.raises(ValueError, match="train_fraction must be in"):
        ImageClassification(train_fraction=0.0)


def test_spec_augment_draws_new_masks_each_epoch_reproducibly_and_caches_spectrograms() -> None:
    datamodule = KeypadKeys(num_train=4, num_eval=4, batch_size=4, spec_augment={"num_time_masks": 3})
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    dataset = datamodule.make_dataset("train")
    assert dataset is loader.dataset
    loader.sampler.set_epoch(1)  # type: ignore[attr-defined]  # what Lightning calls each epoch
    assert sorted(loader.sampler) == [4, 5, 6, 7], "the training sampler must tag indices with the epoch"

    def clip(key: int) -> torch.Tensor:
        return dataset[key]["inputs"]["audio"].values

    assert not torch.equal(clip(0), clip(4)), "SpecAugment repeated the same masks in the next epoch"
    assert torch.equal(clip(4), clip(4)), "an epoch's masks must be a pure function of (seed, epoch, index)"
    cache = dataset._features  # type: ignore[attr-defined]
    assert sorted(cache) == [(i, "audio") for i in range(4)], "make_dataset fills the cache, one entry per clip"
    tokenizer = datamodule.task.inputs["audio"]  # type: ignore[union-attr]
    for index in range(4):  # batched spectrograms equal one-clip ones
        alone = tokenizer.features(dataset.samples[index]["inputs"]["audio"])  # type: ignore[attr-defined]
        torch.testing.assert_close(cache[(index, "audio")], alone, rtol=0, atol=1e-5)
    val = datamodule.make_dataset("val")
    val[0]["inputs"]["audio"].values.zero_()  # a caller editing an item in place
    assert val[0]["inputs"]["audio"].values.abs().sum() > 0, "editing an item corrupted the spectrogram cache"
