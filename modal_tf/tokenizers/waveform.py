"""Raw audio input for the audio tokenizers: the ``Audio`` sample, PCM to float, cached resamplers.

Notation: C channels, S samples.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch
import torchaudio
from torch import Tensor

# Integer PCM: float = (x - offset) / scale, the WAV/libsndfile convention (full scale -> [-1, 1)).
PCM_SCALES: dict[torch.dtype, tuple[float, float]] = {
    torch.uint8: (128.0, 128.0),  # 8-bit WAV is unsigned, silence at 128
    torch.int8: (0.0, 128.0),
    torch.int16: (0.0, 32768.0),
    torch.int32: (0.0, 2147483648.0),
}
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
NUMPY_DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32")


class Audio(NamedTuple):
    """One raw audio sample: ``waveform`` ``(S,)`` or ``(C, S)`` (tensor or array) at ``sample_rate`` Hz.

    A plain ``(waveform, sample_rate)`` tuple, e.g. from ``modal_tf.data.audio_io.read_audio``, works too.
    """

    waveform: Tensor | np.ndarray
    sample_rate: int


@functools.lru_cache(maxsize=8)
def resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    """A ``Resample`` transform per rate pair: it builds its windowed-sinc kernel once, where
    ``torchaudio.functional.resample`` rebuilds it on every call (~3/4 of the time for a 1 s clip at 44.1 kHz).
    Same defaults, so outputs equal the functional form's (tested)."""
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def float_waveform(waveform: Any) -> Tensor:
    """A tensor or array of float or integer-PCM samples as a CPU float32 tensor (same shape)."""
    if isinstance(waveform, np.ndarray):
        if waveform.dtype.name not in NUMPY_DTYPES:
            raise TypeError(f"waveform array must have dtype in {NUMPY_DTYPES}, got {waveform.dtype}")
        # from_numpy needs native byte order (raw AIFF buffers are big-endian) and warns on read-only arrays
        native = np.ascontiguousarray(waveform, dtype=waveform.dtype.newbyteorder("="))
        waveform = torch.from_numpy(native if native.flags.writeable else native.copy())
    elif not isinstance(waveform, Tensor):
        raise TypeError(f"waveform must be a torch.Tensor or numpy.ndarray, got {type(waveform).__name__}")
    waveform = waveform.detach().cpu()
    if waveform.dtype in PCM_SCALES:
        offset, scale = PCM_SCALES[waveform.dtype]
        return ((waveform.double() - offset) / scale).float()  # float64 keeps all 32 bits of int32 exact
    if waveform.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"waveform dtype must be float or integer PCM ({', '.join(map(str, PCM_SCALES))}), got {waveform.dtype} "
            "(int64 has no standard PCM scale: convert to float in [-1, 1] first)"
        )
    return waveform.float()
