"""Audio recipes' data: DTMF keys and key sequences (embedded), Speech Commands, folders of WAV/FLAC.

Clips are kept as ``Audio`` (generated) or as file paths (real data, read with
``soundfile`` in the DataLoader worker, never all in memory). SpecAugment runs
on training clips only, between the tokenizer's ``features`` and
``tokens_from_features``; its masks are seeded by ``(seed, sample index)`` so
runs are reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from modal_tf.data import dtmf
from modal_tf.data.audio_io import read_audio
from modal_tf.data.augment import SpecAugment
from modal_tf.datamodules.base import EncodedDataset, ModalDataModule, Sample, require_discrete, seeded_splits
from modal_tf.task import TaskSpec
from modal_tf.tokenizers import Audio, SpectrogramTokenizer, tokenizer_from_spec

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
DEFAULT_AUDIO = {"name": "spectrogram", "sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "stack": 2}


def load_clip(raw: Any) -> Audio:
    """A generated ``Audio`` as is; a path read with soundfile."""
    if isinstance(raw, str | Path):
        waveform, rate = read_audio(raw)
        return Audio(waveform, rate)
    return raw


class AudioDataset(EncodedDataset):
    """Reads clips lazily and applies SpecAugment (training only) before tokenization.

    With ``cache_features``, every clip's log-mel spectrogram (the deterministic, costly part: resampling, STFT,
    mel projection) is computed when the dataset is made, equal-length clips in batched STFTs
    (``SpectrogramTokenizer.batch_features``), and kept: the DataLoader's workers inherit it, so epoch 1 does not
    wait for spectrograms (on the keys recipe, a worker computing them one clip at a time made training wait 14-29 %
    of each step). SpecAugment still draws fresh masks from the per-sample seed on every call. The spectrogram (100
    frames x M mels per second) is smaller than the 8 kHz waveform it replaces, so this is for in-memory clips;
    files on disk stay lazy.

    With SpecAugment the training sampler passes keys ``epoch * len + index`` (``epoch_tagged``), so every epoch
    draws new masks, each a pure function of ``(seed, epoch, index)`` (exact resume and any worker count agree).
    """

    def __init__(
        self,
        samples: list[Sample],
        task: TaskSpec,
        augment: SpecAugment | None,
        seed: int,
        cache_features: bool = False,
    ) -> None:
        super().__init__(samples, task)
        self.augment = augment
        self.seed = seed
        self.cache_features = cache_features
        self.epoch_tagged = augment is not None
        self._features = self._all_spectrograms() if cache_features else {}

    def _all_spectrograms(self) -> dict[tuple[int, str], Tensor]:
        """``(index, input name) -> (N, M)`` log-mel features of every clip of every spectrogram input."""
        features: dict[tuple[int, str], Tensor] = {}
        for name, tokenizer in self.task.inputs.items():
            if isinstance(tokenizer, SpectrogramTokenizer):
                clips = [load_clip(sample["inputs"][name]) for sample in self.samples]
                features.update(((index, name), f) for index, f in enumerate(tokenizer.batch_features(clips)))
        return features

    def _spectrogram(self, index: int, name: str, tokenizer: SpectrogramTokenizer) -> Tensor:
        """Log-mel features ``(N, M)`` of input ``name`` of sample ``index`` (precomputed with ``cache_features``)."""
        cached = self._features.get((index, name))
        return cached if cached is not None else tokenizer.features(load_clip(self.samples[index]["inputs"][name]))

    def __getitem__(self, key: int) -> dict[str, Any]:
        epoch, index = divmod(key, len(self.samples))  # plain indices (epoch 0) work too
        sample = self.samples[index]
        inputs = {}
        for name, tokenizer in self.task.inputs.items():
            if isinstance(tokenizer, SpectrogramTokenizer):
                features = self._spectrogram(index, name, tokenizer)
                if self.augment is not None:  # returns a new tensor
                    features = self.augment(features, (self.seed * 1_000_003 + epoch) * 1_000_033 + index)
                elif self.cache_features:  # tokens may view their features: never hand out the cached tensor
                    features = features.clone()
                inputs[name] = tokenizer.tokens_from_features(features)
            else:
                inputs[name] = tokenizer.encode(load_clip(sample["inputs"][name]))
        item: dict[str, Any] = {"inputs": inputs}
        if self.task.target is not None:
            item["target"] = self.task.target.encode_target(sample["target"])
        else:
            item["label"] = sample["label"]
        return item


class AudioDataModule(ModalDataModule):
    """Shared by the audio DataModules: lazy clips and training-only SpecAugment.

    Args:
        spec_augment: SpecAugment policy for training clips (``{}`` for the defaults, None to disable).
        batch_size: Clips per batch.
        num_workers: DataLoader workers.
        seed: Generation, augmentation and shuffling seed.
    """

    prefetch_thread = True  # small batches of cached spectrograms, short steps: whole runs ~1.1x (prefetch.py)

    def __init__(
        self, spec_augment: dict[str, Any] | None = None, batch_size: int = 64, num_workers: int = 0, seed: int = 0
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.augment = SpecAugment(**spec_augment) if spec_augment is not None else None
        self._datasets: dict[str, AudioDataset] = {}

    def restore_task(self, task: TaskSpec) -> None:
        """Use restored tokenizers; datasets (and cached spectrograms) built with other tokenizers are dropped."""
        super().restore_task(task)
        self._datasets.clear()

    def make_dataset(self, split: str) -> Dataset[dict[str, Any]]:
        """SpecAugment on the training split only; spectrograms of in-memory clips are computed here, once, and kept."""
        if self.splits is None or self.task is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for the {split} data")
        if split not in self._datasets:  # one dataset per split, so its cache outlives each new DataLoader
            samples = self.splits[split]
            in_memory = all(not isinstance(raw, str | Path) for sample in samples for raw in sample["inputs"].values())
            augment = self.augment if split == "train" else None
            self._datasets[split] = AudioDataset(samples, self.task, augment, self.seed, cache_features=in_memory)
        return self._datasets[split]


class KeypadKeys(AudioDataModule):
    """Which telephone key is pressed? 16 classes of noisy DTMF tones at 8 kHz.

    Args:
        num_train: Training clips.
        num_eval: Validation and test clips each.
        tokenizer: Audio tokenizer spec.
        spec_augment: SpecAugment policy for training clips, or None.
        batch_size: Clips per batch.
        num_workers: DataLoader workers.
        seed: Generation, augmentation and shuffling seed.
    """

    def __init__(
        self,
        num_train: int = 4000,
        num_eval: int = 500,
        tokenizer: dict[str, Any] | None = None,
        spec_augment: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(spec_augment, batch_size, num_workers, seed)
        self.sizes = {"train": num_train, "val": num_eval, "test": num_eval}
        self.tokenizer_spec = dict(tokenizer or DEFAULT_AUDIO)

    def build_splits(self) -> dict[str, list[Sample]]:
        """Independently seeded splits."""
        return seeded_splits(
            self.sizes,
            self.seed,
            lambda size, seed: [
                {"inputs": {"audio": Audio(wave, dtmf.SAMPLE_RATE)}, "label": label}
                for wave, label in dtmf.key_clips(size, seed)
            ],
        )

    def build_task(self) -> TaskSpec:
        """Audio in, one of 16 keys out."""
        return TaskSpec(
            {"audio": tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer")}, class_names=list(dtmf.KEYS)
        )


class KeypadSequences(AudioDataModule):
    """Transcribe dialled key sequences (2-8 keys, repeats included): audio in, text out.

    Args:
        num_train: Training clips.
        num_eval: Validation and test clips each.
        min_keys: Fewest keys per clip.
        max_keys: Most keys per clip.
        audio_tokenizer: Audio tokenizer spec.
        text_tokenizer: Target tokenizer spec (discrete).
        spec_augment: SpecAugment policy for training clips, or None.
        batch_size: Clips per batch.
        num_workers: DataLoader workers.
        seed: Generation, augmentation and shuffling seed.
    """

    def __init__(
        self,
        num_train: int = 6000,
        num_eval: int = 300,
        min_keys: int = 2,
        max_keys: int = 8,
        audio_tokenizer: dict[str, Any] | None = None,
        text_tokenizer: dict[str, Any] | None = None,
        spec_augment: dict[str, Any] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(spec_augment, batch_size, num_workers, seed)
        self.sizes = {"train": num_train, "val": num_eval, "test": num_eval}
        self.key_range = (min_keys, max_keys)
        self.audio_spec = dict(audio_tokenizer or DEFAULT_AUDIO)
        self.text_spec = dict(text_tokenizer or {"name": "bytes"})

    def build_splits(self) -> dict[str, list[Sample]]:
        """Independently seeded splits."""
        return seeded_splits(
            self.sizes,
            self.seed,
            lambda size, seed: [
                {"inputs": {"audio": Audio(wave, dtmf.SAMPLE_RATE)}, "target": keys}
                for wave, keys in dtmf.sequence_clips(size, seed, *self.key_range)
            ],
        )

    def build_task(self) -> TaskSpec:
        """Audio in, key string out."""
        text = require_discrete(tokenizer_from_spec(self.text_spec, "data.text_tokenizer"), "data.text_tokenizer")
        return TaskSpec({"audio": tokenizer_from_spec(self.audio_spec, "data.audio_tokenizer")}, target=text)


def _folder_splits(root: Path) -> tuple[dict[str, list[Sample]], list[str]]:
    classes = sorted(path.name for path in root.iterdir() if path.is_dir())
    files = sorted(path for path in root.glob("*/*") if path.suffix.lower() in AUDIO_SUFFIXES)
    if not classes or not files:
        raise FileNotFoundError(f"{root} must hold one folder per class with {'/'.join(AUDIO_SUFFIXES)} files")
    splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for index, path in enumerate(files):
        name = "test" if index % 10 == 0 else "val" if index % 10 == 1 else "train"
        splits[name].append({"inputs": {"audio": str(path)}, "label": classes.index(path.parent.name)})
    return splits, classes


def _speech_commands_splits(root: Path, download: bool) -> tuple[dict[str, list[Sample]], list[str]]:
    from torchaudio.datasets import SPEECHCOMMANDS

    subsets = {"train": "training", "val": "validation", "test": "testing"}
    try:
        datasets = {
            split: SPEECHCOMMANDS(str(root), download=download, subset=subset) for split, subset in subsets.items()
        }
    except RuntimeError as error:
        raise FileNotFoundError(f"Speech Commands not found under {root}: {error}") from None
    except OSError as error:
        raise ConnectionError(f"could not download Speech Commands into {root}: {error}") from None
    rows = {split: [dataset.get_metadata(n) for n in range(len(dataset))] for split, dataset in datasets.items()}
    classes = sorted({row[2] for items in rows.values() for row in items})
    archive = Path(datasets["train"]._archive)  # get_metadata paths are relative to it
    splits = {
        split: [{"inputs": {"audio": str(archive / row[0])}, "label": classes.index(row[2])} for row in items]
        for split, items in rows.items()
    }
    return splits, classes


class AudioClassification(AudioDataModule):
    """Real audio: Speech Commands v2 (torchaudio metadata, soundfile reading) or a folder per class.

    Args:
        source: ``speech_commands`` or a folder ``root/<class>/<clip>.wav|flac|ogg``
            (file ``i``, sorted, goes to test if ``i % 10 == 0``, val if 1).
        root: Download/cache folder for Speech Commands.
        download: Download Speech Commands when missing.
        tokenizer: Audio tokenizer spec.
        spec_augment: SpecAugment policy for training clips, or None.
        batch_size: Clips per batch.
        num_workers: DataLoader workers.
        seed: Augmentation and shuffling seed.
    """

    def __init__(
        self,
        source: str = "speech_commands",
        root: str = "data",
        download: bool = True,
        tokenizer: dict[str, Any] | None = None,
        spec_augment: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(spec_augment, batch_size, num_workers, seed)
        self.source, self.root, self.download = source, root, download
        self.tokenizer_spec = dict(tokenizer or {"name": "spectrogram", "n_mels": 40, "stack": 2})
        self.class_names: list[str] = []

    def build_splits(self) -> dict[str, list[Sample]]:
        """File paths and labels per split."""
        if self.source == "speech_commands":
            splits, self.class_names = _speech_commands_splits(Path(self.root), self.download)
        else:
            folder = Path(self.source)
            if not folder.is_dir():
                raise FileNotFoundError(f"data.source: audio folder not found: {folder}")
            splits, self.class_names = _folder_splits(folder)
        return splits

    def build_task(self) -> TaskSpec:
        """Audio in, a class out."""
        if not self.class_names:
            raise RuntimeError("build_splits() must run before build_task()")
        return TaskSpec(
            {"audio": tokenizer_from_spec(self.tokenizer_spec, "data.tokenizer")}, class_names=self.class_names
        )
