"""Log-mel spectrogram tokenizer: audio to stacked frames or time×frequency patches.

Notation: C channels, S samples, N spectrogram frames, M mel bins (``n_mels``),
T tokens, F feature width, A coordinate axes, pt/pf patch size in frames/bins.

``encode(Audio(waveform, sample_rate))`` runs, without a Python loop over frames:

1. integer PCM to float in [-1, 1] (``int16 / 32768``, ``int32 / 2**31``, ``int8 / 128``,
   ``(uint8 - 128) / 128``); NaN/inf rejected;
2. down-mix ``(C, S)`` to mono by the mean over channels;
3. resample to ``sample_rate`` with torchaudio's windowed-sinc resampler (or, with
   ``resample=False``, reject any other rate);
4. ``features``: Whisper's log-mel (Radford et al. 2022, https://arxiv.org/abs/2212.04356):
   power STFT (periodic Hann window, centred with reflect padding, last frame
   dropped so N = S // hop_length), Slaney-scale Slaney-normalised mel filters
   from 0 Hz to Nyquist, ``log10(max(mel, 1e-10))``, clamped to 8 decades
   (80 dB) below the clip's maximum, then ``(x + 4) / 4`` → ``(N, M)``: values
   lie in [-1.5, about 1.7] for audio in [-1, 1] (-1.5 is digital silence)
   and span at most 2 within one clip;
5. ``tokens_from_features``: ``stack`` consecutive frames per token (axis
   ``time``, F = stack * M), or AST-style ``patch_size=(pt, pf)`` patches in
   time-major order (axes ``time, freq``, F = pt * pf; Gong et al. 2021,
   https://arxiv.org/abs/2104.01778). Trailing frames that do not fill a
   token (fewer than ``stack`` or ``pt``) are dropped.

Steps 4 and 5 are separate so a training pipeline can augment the spectrogram
in between (SpecAugment, ``modal_tf.data.augment``) while ``encode`` stays
deterministic.

The STFT window and mel filterbank are plain tensors held in a module-level
``functools.lru_cache`` keyed by the analysis settings, not on the instance:
the tokenizer stays a handful of numbers (parameter-free, pickles to DataLoader
workers in bytes, no ``nn.Module`` such as ``torchaudio.transforms.MelSpectrogram``
as an attribute), and every instance with the same settings shares one filterbank.
Resampling kernels are cached the same way, per rate pair (``waveform.resampler``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchaudio
from einops import rearrange
from torch import Tensor

from modal_tf.tokenizers.base import FeatureTokenizer, Tokens
from modal_tf.tokenizers.registry import register_tokenizer
from modal_tf.tokenizers.waveform import float_waveform, resampler

LOG_FLOOR = 1e-10  # Whisper's clamp before log10
DYNAMIC_RANGE = 8.0  # decades of log10 power kept below the clip's maximum (80 dB)


@functools.lru_cache(maxsize=16)
def analysis_tensors(sample_rate: int, n_fft: int, n_mels: int) -> tuple[Tensor, Tensor]:
    """Periodic Hann window ``(n_fft,)`` and Slaney mel filterbank ``(n_fft // 2 + 1, M)``, built once per setting.

    Callers must not modify the returned tensors in place: they are shared.
    """
    with warnings.catch_warnings():
        # torchaudio warns about empty filters; the tokenizer constructor turns that into a ValueError instead
        warnings.simplefilter("ignore", UserWarning)
        filters = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
        )
    return torch.hann_window(n_fft), filters


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


@register_tokenizer("spectrogram")
class SpectrogramTokenizer(FeatureTokenizer):
    """Whisper-style log-mel frames (axis ``time``) or AST patches (axes ``time, freq``) of mono audio.

    Raw samples are ``Audio(waveform, sample_rate)`` or a ``(waveform, sample_rate)``
    tuple; a bare waveform is rejected, since it carries no rate and a wrong one
    would silently shift every frequency.

    Args:
        sample_rate: Rate in Hz the audio is analysed at (16 kHz, as Whisper).
        n_fft: STFT window and FFT size in samples (400 = 25 ms at 16 kHz).
        hop_length: Samples between frames (160 = 10 ms at 16 kHz: 100 frames per second).
        n_mels: Mel bins M (80, as Whisper; fewer for tiny CPU models).
        stack: Consecutive frames concatenated into one token (frame mode, F = stack * M).
        patch_size: ``(pt, pf)`` frames × mel bins per patch token; switches to patch mode
            (axes ``time, freq``, F = pt * pf). ``n_mels`` must be divisible by ``pf``.
        resample: Resample other rates to ``sample_rate`` (True) or reject them (False).
        max_seconds: Longest accepted audio in seconds, or None for no limit.
        truncate: Over-long audio is cut to ``max_seconds`` with a warning (True) or rejected
            with ``ValueError`` (False).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        stack: int = 1,
        patch_size: Sequence[int] | None = None,
        resample: bool = True,
        max_seconds: float | None = None,
        truncate: bool = False,
    ) -> None:
        self.sample_rate = _positive_int(sample_rate, "sample_rate")
        self.n_fft = _positive_int(n_fft, "n_fft")
        self.hop_length = _positive_int(hop_length, "hop_length")
        self.n_mels = _positive_int(n_mels, "n_mels")
        self.stack = _positive_int(stack, "stack")
        if self.hop_length > self.n_fft:
            raise ValueError(
                f"hop_length must be <= n_fft (else audio between windows is skipped), got "
                f"hop_length={hop_length}, n_fft={n_fft}"
            )
        self.patch_size: tuple[int, int] | None = None
        if patch_size is not None:
            if isinstance(patch_size, str | bytes) or not isinstance(patch_size, Sequence) or len(patch_size) != 2:
                raise ValueError(f"patch_size must be a pair (pt, pf) of positive ints or None, got {patch_size!r}")
            self.patch_size = (
                _positive_int(patch_size[0], "patch_size[0]"),
                _positive_int(patch_size[1], "patch_size[1]"),
            )
            if self.n_mels % self.patch_size[1]:
                raise ValueError(f"n_mels={n_mels} must be divisible by the patch's mel size {self.patch_size[1]}")
            if self.stack != 1:
                raise ValueError(
                    f"stack applies to frame mode only; with patch_size={patch_size} use stack=1, got {stack}"
                )
        if max_seconds is not None and (
            isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float) or not max_seconds > 0
        ):
            raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
        for name, flag in (("resample", resample), ("truncate", truncate)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} ({flag!r})")
        self.resample = resample
        self.max_seconds = max_seconds
        self.truncate = truncate
        # axes depend on the mode: an instance attribute shadows the base class default
        self.axes = ("time",) if self.patch_size is None else ("time", "freq")
        empty = int((analysis_tensors(self.sample_rate, self.n_fft, self.n_mels)[1].sum(0) == 0).sum())
        if empty:
            raise ValueError(
                f"n_mels={n_mels} is too many for n_fft={n_fft} at {sample_rate} Hz: {empty} mel filters "
                "cover no FFT bin; lower n_mels or raise n_fft"
            )

    def config(self) -> dict[str, Any]:
        """Constructor arguments (``patch_size`` as a list, the JSON form)."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "stack": self.stack,
            "patch_size": None if self.patch_size is None else list(self.patch_size),
            "resample": self.resample,
            "max_seconds": self.max_seconds,
            "truncate": self.truncate,
        }

    @property
    def feature_dim(self) -> int:
        """F: ``stack * n_mels`` in frame mode, ``pt * pf`` in patch mode."""
        return self.stack * self.n_mels if self.patch_size is None else self.patch_size[0] * self.patch_size[1]

    @property
    def frames_per_token(self) -> int:
        """Spectrogram frames spanned by one token along time (``stack`` or ``pt``)."""
        return self.stack if self.patch_size is None else self.patch_size[0]

    def encode(self, raw: Any) -> Tokens:
        """``Audio`` to ``Tokens``: values ``(T, F)`` float32, coords ``(T, 1)`` time or ``(T, 2)`` time, freq."""
        return self.tokens_from_features(self.features(raw))

    def features(self, raw: Any) -> Tensor:
        """``Audio`` to its scaled log-mel spectrogram ``(N, M)`` float32, N = resampled samples // hop_length."""
        waveform, rate = self._unpack(raw)
        # the mean keeps [-1, 1] and is linear, so it commutes with resampling
        return self.mono_features(waveform.mean(0)[None], rate)[0]

    def batch_features(self, clips: Sequence[Any], chunk: int = 256) -> list[Tensor]:
        """``features`` of many clips, in order; clips of equal rate and length share batched STFTs.

        One clip at a time, a 1 s clip's few small FFTs cost less than the Python and dispatch around them; a batch
        of ``chunk`` equal-length clips goes through ``mono_features`` in one call (values equal ``features``'s up
        to float rounding).
        """
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive number of clips per batch, got {chunk!r}")
        groups: dict[tuple[int, int], list[tuple[int, Tensor]]] = {}  # (rate, samples) -> (position, mono)
        for position, clip in enumerate(clips):
            waveform, rate = self._unpack(clip)
            mono = waveform.mean(0)  # (S,)
            groups.setdefault((rate, mono.shape[0]), []).append((position, mono))
        out: list[Tensor | None] = [None] * len(clips)
        for (rate, _), members in groups.items():
            for start in range(0, len(members), chunk):
                part = members[start : start + chunk]
                batch = self.mono_features(torch.stack([mono for _, mono in part]), rate)  # (b, N, M)
                for (position, _), features in zip(part, batch, strict=True):
                    out[position] = features.clone()  # its own storage: a view would pin the whole batch
        return out  # type: ignore[return-value]  # every position was filled

    def mono_features(self, mono: Tensor, rate: int) -> Tensor:
        """Equal-length mono clips ``(B, S)`` at ``rate`` Hz to scaled log-mel spectrograms ``(B, N, M)``."""
        samples = mono.shape[-1]
        if rate != self.sample_rate:
            if not self.resample:
                raise ValueError(f"audio sample rate must be {self.sample_rate} Hz (resample=False), got {rate} Hz")
            with torch.no_grad():  # a data-side transform: no graph, and the cached kernel never needs grad
                mono = resampler(rate, self.sample_rate)(mono)  # (B, S')
        if mono.shape[-1] < self.n_fft:
            raise ValueError(
                f"audio has {samples} samples at {rate} Hz ({mono.shape[-1]} at {self.sample_rate} Hz), "
                f"fewer than one analysis window of n_fft={self.n_fft} samples"
            )
        window, filters = analysis_tensors(self.sample_rate, self.n_fft, self.n_mels)
        spectrum = torch.stft(
            mono, self.n_fft, self.hop_length, window=window, center=True, pad_mode="reflect", return_complex=True
        )  # (B, n_fft // 2 + 1, N + 1)
        power = spectrum[..., :-1].abs() ** 2  # (B, n_fft // 2 + 1, N): Whisper drops the last centred frame
        log_mel = torch.log10((power.transpose(1, 2) @ filters).clamp(min=LOG_FLOOR))  # (B, N, M)
        log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - DYNAMIC_RANGE)  # per clip
        return ((log_mel + 4.0) / 4.0).contiguous()

    def tokens_from_features(self, features: Tensor) -> Tokens:
        """A log-mel spectrogram ``(N, M)`` (from ``features``, possibly augmented) to ``Tokens``."""
        if not isinstance(features, Tensor) or not features.is_floating_point():
            kind = features.dtype if isinstance(features, Tensor) else type(features).__name__
            raise TypeError(f"features must be a float tensor (N, {self.n_mels}), got {kind}")
        if features.dim() != 2 or features.shape[1] != self.n_mels:
            raise ValueError(f"features must have shape (N, {self.n_mels}), got {tuple(features.shape)}")
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features contain NaN or inf")
        span = self.frames_per_token
        count = features.shape[0] // span
        if count == 0:
            raise ValueError(
                f"spectrogram has {features.shape[0]} frames, fewer than the {span} one token needs "
                f"(at least {max(self.n_fft, span * self.hop_length)} samples at {self.sample_rate} Hz)"
            )
        kept = features[: count * span].float()  # (count * span, M): trailing partial token dropped
        if self.patch_size is None:
            values = rearrange(kept, "(t s) m -> t (s m)", s=span)  # (T, stack * M)
        else:
            values = rearrange(
                kept, "(nt pt) (nf pf) -> (nt nf) (pt pf)", pt=span, pf=self.patch_size[1]
            )  # (T = nt * nf, pt * pf), time-major
        return Tokens(values.contiguous(), self.positions(values.shape[0]))

    def positions(self, length: int) -> Tensor:
        """Coordinates ``(length, A)`` of the first ``length`` tokens: time index, plus mel-band index for patches."""
        index = torch.arange(length)
        if self.patch_size is None:
            return index[:, None]  # (length, 1)
        bands = self.n_mels // self.patch_size[1]
        return torch.stack([index // bands, index % bands], dim=1)  # (length, 2)

    def _unpack(self, raw: Any) -> tuple[Tensor, int]:
        """Validate a raw sample; return the float waveform ``(C, S)`` (truncated if allowed) and its rate."""
        if not isinstance(raw, tuple) or len(raw) != 2:
            got = f"tuple of length {len(raw)}" if isinstance(raw, tuple) else type(raw).__name__
            raise TypeError(
                f"{self.registry_name} tokenizer expects Audio(waveform, sample_rate) or a "
                f"(waveform, sample_rate) tuple, got {got}"
            )
        waveform, rate = float_waveform(raw[0]), raw[1]
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
            raise TypeError(f"sample_rate must be an int (Hz), got {type(rate).__name__} ({rate!r})")
        if rate < 1:
            raise ValueError(f"sample_rate must be positive, got {rate}")
        if waveform.dim() not in (1, 2):
            raise ValueError(f"waveform must be (samples,) or (channels, samples), got shape {tuple(waveform.shape)}")
        if waveform.numel() == 0:
            raise ValueError(f"waveform is empty, got shape {tuple(waveform.shape)}")
        waveform = waveform if waveform.dim() == 2 else waveform[None]  # (C, S)
        channels, samples = waveform.shape
        if channels > samples:
            raise ValueError(
                f"waveform has more channels than samples, shape {tuple(waveform.shape)}; expected "
                "(channels, samples) — transpose a (samples, channels) array"
            )
        if not bool(torch.isfinite(waveform).all()):
            raise ValueError("waveform contains NaN or inf samples")
        limit = None if self.max_seconds is None else math.floor(self.max_seconds * int(rate))
        if limit is not None and samples > limit:
            if not self.truncate:
                raise ValueError(
                    f"audio lasts {samples / rate:.3f} s, more than max_seconds={self.max_seconds}; "
                    "shorten it or set truncate=True"
                )
            warnings.warn(f"audio of {samples / rate:.3f} s truncated to max_seconds={self.max_seconds}", stacklevel=4)
            waveform = waveform[:, :limit]  # (C, limit)
        return waveform, int(rate)
