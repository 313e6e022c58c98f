"""Reading audio files into ``(waveform, sample_rate)`` with soundfile (libsndfile).

Notation: C channels, S samples per channel.

soundfile rather than ``torchaudio.load``: since torchaudio 2.9 the latter
needs TorchCodec and FFmpeg, while libsndfile ships inside the soundfile wheel
and reads WAV, FLAC, OGG/Vorbis, MP3 (libsndfile >= 1.1) and more.
"""

from __future__ import annotations

import os
from pathlib import Path

import soundfile
import torch
from torch import Tensor


def read_audio(path: str | os.PathLike[str]) -> tuple[Tensor, int]:
    """Read an audio file as a float32 waveform ``(C, S)`` and its sample rate in Hz.

    Integer PCM is scaled to [-1, 1) by libsndfile (16-bit: ``x / 32768``; 24- and
    32-bit: ``x / 2**31`` after left-alignment; 8-bit unsigned: ``(x - 128) / 128``);
    float files come back as stored. The result is a valid raw sample for the
    ``spectrogram`` tokenizers.

    Raises:
        TypeError: ``path`` is not a str or path.
        FileNotFoundError: no regular file at ``path``.
        ValueError: the file cannot be decoded (corrupt, truncated or unknown format).
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"audio path must be a str or os.PathLike, got {type(path).__name__}")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"audio file not found (or not a regular file): {file}")
    try:
        samples, sample_rate = soundfile.read(file, dtype="float32", always_2d=True)  # (S, C)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise ValueError(f"could not decode audio file {file}: {error}") from None
    waveform = torch.from_numpy(samples.T.copy())  # (C, S), contiguous
    return waveform, int(sample_rate)
