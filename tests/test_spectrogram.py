"""Audio: the spectrogram and whisper_frames tokenizers, SpecAugment and read_audio."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from hypothesis import given, settings
from hypothesis import strategies as st

from modal_tf.core import TransformerConfig
from modal_tf.data.audio_io import read_audio
from modal_tf.data.augment import SpecAugment
from modal_tf.models import EncoderOnly
from modal_tf.testing import check_tokenizer
from modal_tf.tokenizers import create_tokenizer
from modal_tf.tokenizers.spectrogram import SpectrogramTokenizer
from modal_tf.tokenizers.waveform import Audio
from modal_tf.tokenizers.whisper_stem import WhisperFrameTokenizer, WhisperStem

RATE = 16000


def sine(seconds: float, rate: int = RATE, hertz: float = 440.0, channels: int = 0) -> torch.Tensor:
    """A 0.5-amplitude sine ``(S,)``, or ``(channels, S)`` with each channel at a different frequency."""
    time = torch.arange(round(seconds * rate)) / rate
    if channels == 0:
        return 0.5 * torch.sin(2 * math.pi * hertz * time)
    return torch.stack([0.5 * torch.sin(2 * math.pi * hertz * (c + 1) * time) for c in range(channels)])


def samples() -> list[Any]:
    """Short clips of unequal length: mono, stereo, noise, 8 kHz (resampled), numpy and a plain tuple."""
    noise = torch.Generator().manual_seed(1)
    return [
        Audio(sine(0.2), RATE),
        Audio(sine(0.35, channels=2), RATE),
        Audio(0.1 * torch.randn(2, 8000, generator=noise), RATE),
        Audio(sine(0.3, rate=8000, hertz=1000.0), 8000),
        (sine(0.45).numpy(), RATE),
    ]


@pytest.mark.parametrize(
    "tokenizer",
    [
        SpectrogramTokenizer(),
        SpectrogramTokenizer(n_mels=32, stack=3),
        SpectrogramTokenizer(n_mels=32, patch_size=(4, 8)),
        WhisperFrameTokenizer(),
        WhisperFrameTokenizer(n_mels=40),
    ],
    ids=["frames", "stacked", "patches", "whisper", "whisper-40"],
)
def test_audio_tokenizers_pass_the_conformance_kit(tokenizer: SpectrogramTokenizer) -> None:
    check_tokenizer(tokenizer, samples())


def test_features_match_torchaudio_mel_spectrogram_with_whisper_log() -> None:
    clip = 0.3 * torch.randn(4000) + sine(0.25)
    reference = torchaudio.transforms.MelSpectrogram(
        RATE, n_fft=400, hop_length=160, n_mels=80, norm="slaney", mel_scale="slaney", power=2.0
    )(clip)[:, :-1]  # (M, N): Whisper drops the last centred frame
    log = torch.log10(reference.clamp(min=1e-10))
    expected = ((torch.maximum(log, log.max() - 8.0) + 4.0) / 4.0).T  # (N, M)
    features = SpectrogramTokenizer().features(Audio(clip, RATE))
    assert features.shape == (4000 // 160, 80)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_log_mel_keeps_eight_decades_below_the_clip_maximum() -> None:
    clip = torch.cat([sine(0.2), torch.zeros(3200)])  # loud tone then digital silence: huge dynamic range
    features = SpectrogramTokenizer().features(Audio(clip, RATE))
    assert math.isclose(float(features.max() - features.min()), 8.0 / 4.0, abs_tol=1e-5)
    silence = SpectrogramTokenizer().features(Audio(torch.zeros(1600), RATE))
    assert torch.all(silence == (math.log10(1e-10) + 4.0) / 4.0)


def test_resampling_keeps_a_tone_in_its_mel_band() -> None:
    tokenizer = SpectrogramTokenizer()
    native = tokenizer.features(Audio(sine(0.5, hertz=1000.0), RATE))
    low_rate = tokenizer.features(Audio(sine(0.5, rate=8000, hertz=1000.0), 8000))
    assert native.shape == low_rate.shape
    assert native.mean(0).argmax() == low_rate.mean(0).argmax()  # same peak band
    wrong = tokenizer.features(Audio(sine(0.5, rate=8000, hertz=1000.0), RATE))  # rate lied: tone at 2 kHz
    assert wrong.mean(0).argmax() > native.mean(0).argmax()


def test_stereo_is_the_mean_of_its_channels() -> None:
    stereo = sine(0.3, channels=2)
    tokenizer = SpectrogramTokenizer()
    assert torch.equal(tokenizer.encode(Audio(stereo, RATE)).values, tokenizer.encode((stereo.mean(0), RATE)).values)
    assert not torch.equal(tokenizer.encode((stereo, RATE)).values, tokenizer.encode((stereo[0], RATE)).values)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.int16, 32768.0), (np.int32, 2.0**31), (np.int8, 128.0)],
)
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
def test_integer_pcm_is_scaled_to_unit_range(dtype: Any, scale: float, as_tensor: bool) -> None:
    info = np.iinfo(dtype)
    pcm = np.random.default_rng(0).integers(info.min, info.max, size=(2, 4000), endpoint=True).astype(dtype)
    as_float = torch.from_numpy(pcm.astype(np.float64) / scale).float()
    tokenizer = SpectrogramTokenizer(n_mels=32)
    raw = torch.from_numpy(pcm) if as_tensor else pcm
    assert torch.equal(tokenizer.encode((raw, RATE)).values, tokenizer.encode((as_float, RATE)).values)


def test_big_endian_and_read_only_arrays_are_accepted() -> None:
    pcm = np.random.default_rng(0).integers(-20000, 20000, size=3200).astype(np.int16)
    frozen = np.frombuffer(pcm.astype(">i2").tobytes(), dtype=">i2")  # read-only, big-endian
    tokenizer = SpectrogramTokenizer(n_mels=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on read-only arrays
        assert torch.equal(tokenizer.encode((frozen, RATE)).values, tokenizer.encode((pcm, RATE)).values)


def test_unsigned_8_bit_pcm_is_centred_at_128() -> None:
    pcm = np.full(1600, 128, dtype=np.uint8)
    pcm[::7] = 255
    expected = torch.from_numpy((pcm.astype(np.float32) - 128) / 128)
    tokenizer = SpectrogramTokenizer(n_mels=32)
    assert torch.equal(tokenizer.encode((pcm, RATE)).values, tokenizer.encode((expected, RATE)).values)


BAD_INPUTS = [
    (sine(0.2), TypeError, r"expects Audio\(waveform, sample_rate\) or a \(waveform, sample_rate\) tuple, got Tensor"),
    ([sine(0.2), RATE], TypeError, "got list"),
    ((sine(0.2), RATE, 1), TypeError, "got tuple of length 3"),
    (("not audio", RATE), TypeError, "waveform must be a torch.Tensor or numpy.ndarray, got str"),
    ((sine(0.2), 16000.0), TypeError, r"sample_rate must be an int \(Hz\), got float"),
    ((sine(0.2), 0), ValueError, "sample_rate must be positive, got 0"),
    ((torch.ones(3200, dtype=torch.int64), RATE), TypeError, "int64 has no standard PCM scale"),
    ((np.ones(3200, dtype=np.uint16), RATE), TypeError, "dtype in .* got uint16"),
    ((torch.ones(3200, dtype=torch.bool), RATE), TypeError, "got torch.bool"),
    ((torch.zeros(1, 2, 3200), RATE), ValueError, r"\(samples,\) or \(channels, samples\), got shape \(1, 2, 3200\)"),
    ((torch.tensor(0.5), RATE), ValueError, r"got shape \(\)"),
    ((torch.zeros(0), RATE), ValueError, r"waveform is empty, got shape \(0,\)"),
    ((torch.zeros(3200, 2), RATE), ValueError, "more channels than samples.*transpose"),
    ((torch.tensor([0.0, float("nan")] * 800), RATE), ValueError, "NaN or inf"),
    ((torch.tensor([0.0, float("inf")] * 800), RATE), ValueError, "NaN or inf"),
    ((torch.zeros(399), RATE), ValueError, "399 samples at 16000 Hz .*fewer than one analysis window of n_fft=400"),
    ((torch.zeros(199), 8000), ValueError, r"199 samples at 8000 Hz \(398 at 16000 Hz\)"),
]


@pytest.mark.parametrize(("raw", "error", "message"), BAD_INPUTS)
def test_bad_audio_is_rejected_with_a_clear_error(raw: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        SpectrogramTokenizer().encode(raw)


def test_wrong_rate_without_resampling_names_expected_and_received() -> None:
    with pytest.raises(ValueError, match=r"must be 16000 Hz \(resample=False\), got 8000 Hz"):
        SpectrogramTokenizer(resample=False).encode(Audio(sine(0.2, rate=8000), 8000))


def test_too_few_frames_for_one_token_names_the_lengths() -> None:
    with pytest.raises(ValueError, match=r"has 3 frames, fewer than the 4 one token needs \(at least 640 samples"):
        SpectrogramTokenizer(stack=4).encode(Audio(torch.zeros(500), RATE))
    with pytest.raises(ValueError, match="has 10 frames, fewer than the 16"):
        SpectrogramTokenizer(patch_size=(16, 16)).encode(Audio(torch.zeros(1600), RATE))


def test_max_seconds_rejects_or_truncates() -> None:
    clip = Audio(sine(0.5), RATE)
    with pytest.raises(ValueError, match=r"lasts 0.500 s, more than max_seconds=0.25"):
        SpectrogramTokenizer(max_seconds=0.25).encode(clip)
    with pytest.warns(UserWarning, match="truncated to max_seconds=0.25"):
        tokens = SpectrogramTokenizer(max_seconds=0.25, truncate=True).encode(clip)
    assert torch.equal(tokens.values, SpectrogramTokenizer().encode(Audio(sine(0.25), RATE)).values)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"sample_rate": 0}, "sample_rate must be a positive int, got 0"),
        ({"n_mels": 2.5}, "n_mels must be a positive int"),
        ({"hop_length": 500}, "hop_length must be <= n_fft"),
        ({"stack": 2, "patch_size": [4, 8]}, "stack applies to frame mode only"),
        ({"patch_size": [4]}, r"patch_size must be a pair \(pt, pf\)"),
        ({"patch_size": [4, 0]}, r"patch_size\[1\] must be a positive int"),
        ({"patch_size": [4, 7]}, "n_mels=80 must be divisible by the patch's mel size 7"),
        ({"max_seconds": 0}, "max_seconds must be a positive number or None"),
        ({"n_fft": 64, "hop_length": 32, "n_mels": 80}, "n_mels=80 is too many for n_fft=64"),
    ],
)
def test_bad_configuration_is_rejected(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpectrogramTokenizer(**config)


def test_flags_must_be_bools() -> None:
    with pytest.raises(TypeError, match=r"resample must be a bool, got str \('no'\)"):
        SpectrogramTokenizer(resample="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_a_model_trains_on_frames_patches_and_whisper_frames(position: str) -> None:
    inputs = {
        "frames": SpectrogramTokenizer(n_mels=16, stack=2),
        "patches": SpectrogramTokenizer(n_mels=16, patch_size=(4, 8)),
        "whisper": WhisperFrameTokenizer(n_mels=16),
    }
    model = EncoderOnly(TransformerConfig(dim=32, depth=1, num_heads=2, position=position), inputs, num_classes=3)
    clips = [clip for clip in samples() if not isinstance(clip[0], np.ndarray)][:3]
    batches = {name: tok.collate([tok.encode(clip) for clip in clips]) for name, tok in inputs.items()}
    logits = model(batches)
    assert logits.shape == (3, 3)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(grad is not None and bool(torch.isfinite(grad).all()) for grad in grads)


def test_stacked_frames_and_patches_lay_out_the_spectrogram() -> None:
    clip = Audio(0.1 * torch.randn(2500), RATE)  # 15 frames
    features = SpectrogramTokenizer(n_mels=16).features(clip)
    assert features.shape == (15, 16)
    stacked = SpectrogramTokenizer(n_mels=16, stack=4).encode(clip)
    assert stacked.values.shape == (3, 64)  # 15 // 4 tokens, trailing 3 frames dropped
    assert torch.equal(stacked.values[1], features[4:8].reshape(64))
    assert stacked.coords[:, 0].tolist() == [0, 1, 2]
    patches = SpectrogramTokenizer(n_mels=16, patch_size=(5, 8)).encode(clip)
    assert patches.values.shape == (6, 40)  # 3 time steps × 2 mel bands
    assert patches.coords.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]
    assert torch.equal(patches.values[3], features[5:10, 8:16].reshape(40))  # time 1, band 1
    tokenizer = SpectrogramTokenizer(n_mels=16, patch_size=(5, 8))
    assert tokenizer.axes == ("time", "freq") and SpectrogramTokenizer.axes == ("time",)
    assert torch.equal(tokenizer.positions(6), patches.coords)


def test_created_by_name_and_state_keeps_the_mode() -> None:
    tokenizer = create_tokenizer("spectrogram", n_mels=16, patch_size=[4, 8])
    assert isinstance(tokenizer, SpectrogramTokenizer) and tokenizer.axes == ("time", "freq")
    assert tokenizer.config()["patch_size"] == [4, 8]
    whisper = create_tokenizer("whisper_frames", n_mels=16)
    assert isinstance(whisper, WhisperFrameTokenizer) and "stack" not in whisper.config()


@pytest.mark.parametrize(
    ("features", "error", "message"),
    [
        (np.zeros((10, 80), dtype=np.float32), TypeError, "features must be a float tensor .* got ndarray"),
        (torch.zeros(10, 80, dtype=torch.long), TypeError, "got torch.int64"),
        (torch.zeros(10, 40), ValueError, r"shape \(N, 80\), got \(10, 40\)"),
        (torch.full((10, 80), float("nan")), ValueError, "NaN or inf"),
    ],
)
def test_tokens_from_features_checks_its_input(features: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        SpectrogramTokenizer().tokens_from_features(features)


@settings(max_examples=25, deadline=None)
@given(
    samples_in=st.integers(400, 9000),
    rate=st.sampled_from([8000, 16000, 22050]),
    stack=st.integers(1, 3),
    channels=st.integers(1, 2),
)
def test_token_count_follows_length_rate_and_stack(samples_in: int, rate: int, stack: int, channels: int) -> None:
    tokenizer = SpectrogramTokenizer(n_mels=16, stack=stack)
    resampled = -(-samples_in * RATE // rate)  # exact ceil, as torchaudio sizes its output
    if resampled < 400 or resampled // 160 < stack:
        return  # too short: covered by the bad-input tests
    waveform = 0.1 * torch.randn(channels, samples_in)
    tokens = tokenizer.encode(Audio(waveform, rate))
    assert tokens.values.shape == (resampled // 160 // stack, 16 * stack)
    assert bool(torch.isfinite(tokens.values).all())


# --- SpecAugment --------------------------------------------------------------------------------------------------


def spectrogram(frames: int = 60, bins: int = 40) -> torch.Tensor:
    return torch.randn(frames, bins, generator=torch.Generator().manual_seed(5))


def test_spec_augment_is_reproducible_from_a_seed_or_generator() -> None:
    augment, spec = SpecAugment(freq_mask_width=8, time_mask_width=20, max_time_ratio=0.3), spectrogram()
    assert torch.equal(augment(spec, 3), augment(spec, 3))
    assert not torch.equal(augment(spec, 3), augment(spec, 4))
    first, second = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    draws = [augment(spec, first) for _ in range(2)]
    assert torch.equal(draws[0], augment(spec, second))
    assert not torch.equal(draws[0], draws[1])  # the generator advances


def test_spec_augment_masks_bands_with_the_mean_and_leaves_the_input() -> None:
    spec = spectrogram()
    original = spec.clone()
    augment = SpecAugment(freq_mask_width=8, num_freq_masks=1, time_mask_width=50, num_time_masks=1, max_time_ratio=0.2)
    for seed in range(20):
        out = augment(spec, seed)
        changed = out != spec  # (N, M)
        assert torch.all(out[changed] == spec.mean())
        rows, cols = changed.all(1), changed.all(0)  # fully masked frames / mel bins
        assert int(rows.sum()) <= 12 and int(cols.sum()) <= 8  # time: min(50, 0.2 * 60); freq: 8
        masked_rows, masked_cols = rows.nonzero().flatten(), cols.nonzero().flatten()
        for band in (masked_rows, masked_cols):  # one mask of each kind: a contiguous band
            if band.numel():
                assert int(band[-1] - band[0]) + 1 == band.numel()
        assert torch.equal(changed, rows[:, None] | cols[None, :])  # only whole frames and whole bins
    assert torch.equal(spec, original)
    assert torch.equal(SpecAugment(num_freq_masks=0, num_time_masks=0)(spec, 0), spec)


def test_spec_augment_then_tokens_leaves_encode_deterministic() -> None:
    tokenizer, clip = SpectrogramTokenizer(n_mels=40, stack=2), Audio(sine(0.5), RATE)
    augmented = tokenizer.tokens_from_features(SpecAugment()(tokenizer.features(clip), 0))
    plain = tokenizer.encode(clip)
    assert augmented.values.shape == plain.values.shape and not torch.equal(augmented.values, plain.values)
    assert torch.equal(plain.values, tokenizer.encode(clip).values)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: SpecAugment(freq_mask_width=-1), ValueError, "freq_mask_width must be a non-negative int"),
        (lambda: SpecAugment(max_time_ratio=1.5), ValueError, r"max_time_ratio must be a number in \[0, 1\]"),
        (lambda: SpecAugment()(np.zeros((5, 5)), 0), TypeError, "expects a float tensor"),  # type: ignore[arg-type]
        (lambda: SpecAugment()(torch.zeros(2, 5, 5), 0), ValueError, r"got shape \(2, 5, 5\)"),
        (lambda: SpecAugment()(torch.zeros(5, 5), 0.5), TypeError, "rng must be a torch.Generator or an int"),  # type: ignore[arg-type]
    ],
)
def test_spec_augment_rejects_bad_arguments(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# --- Whisper-like stem --------------------------------------------------------------------------------------------


def test_whisper_tokens_are_frame_pairs_with_a_mask_feature() -> None:
    tokenizer = WhisperFrameTokenizer(n_mels=16)
    clip = Audio(0.1 * torch.randn(2500), RATE)  # 15 frames
    tokens, features = tokenizer.encode(clip), tokenizer.features(clip)
    assert tokens.values.shape == (7, 33)
    assert torch.equal(tokens.values[:, :32], features[:14].reshape(7, 32))
    assert torch.all(tokens.values[:, 32] == 1.0)


def test_whisper_stem_embeds_a_sample_the_same_alone_or_padded_in_a_batch() -> None:
    tokenizer = WhisperFrameTokenizer(n_mels=16)
    short, long = tokenizer.encode(Audio(sine(0.2), RATE)), tokenizer.encode(Audio(0.3 * torch.randn(8000), RATE))
    stem = tokenizer.embedding(24)
    batch = tokenizer.collate([short, long])
    length = short.values.shape[0]
    with torch.no_grad():
        alone = stem(short.values[None])  # (1, T, D)
        batched = stem(batch.values)  # (2, T_max, D)
        torch.testing.assert_close(batched[0, :length], alone[0], atol=1e-6, rtol=1e-6)
        leaky = batch.values.clone()
        leaky[..., -1] = 1.0  # pretend padding is real: the second conv now reads a non-zero padded slot
        assert not torch.allclose(stem(leaky)[0, length - 1], alone[0, -1], atol=1e-4)


def test_whisper_stem_is_two_kernel_3_convs_over_time() -> None:
    stem = WhisperStem(in_features=8, dim=12)
    values = torch.cat([torch.randn(1, 11, 8), torch.ones(1, 11, 1)], dim=-1).requires_grad_()
    out = stem(values)
    assert out.shape == (1, 11, 12)
    out[0, 5].sum().backward()
    assert values.grad is not None
    reach = values.grad[0, :, :8].abs().sum(1) > 0  # (T,): tokens that influence output 5
    assert reach.nonzero().flatten().tolist() == [3, 4, 5, 6, 7]  # receptive field of 5 tokens
    assert sum(p.numel() for p in stem.parameters()) == (8 * 12 * 3 + 12) + (12 * 12 * 3 + 12)
    with pytest.raises(ValueError, match=r"expects values \(B, T, 9\), got \(1, 11, 8\)"):
        stem(torch.zeros(1, 11, 8))


# --- read_audio ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "subtype", "channels"),
    [("wav", "PCM_16", 1), ("wav", "FLOAT", 2), ("flac", "PCM_16", 2), ("flac", "PCM_24", 1)],
)
def test_read_audio_returns_channels_first_float(tmp_path: Path, suffix: str, subtype: str, channels: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.9, 0.9, size=(3200, channels))  # (S, C), as soundfile writes
    if subtype == "PCM_16":
        data = np.round(data * 32768) / 32768  # exactly representable in 16 bits
    path = tmp_path / f"clip.{suffix}"
    soundfile.write(path, data, 8000, subtype=subtype)
    waveform, rate = read_audio(path)
    assert rate == 8000 and waveform.dtype == torch.float32 and waveform.shape == (channels, 3200)
    tolerance = 1e-7 if subtype in ("PCM_16", "FLOAT") else 2.0**-23
    np.testing.assert_allclose(waveform.numpy(), data.T, atol=tolerance)
    assert SpectrogramTokenizer(n_mels=32).encode(read_audio(path)).values.shape == (3200 * 2 // 160, 32)


def test_read_audio_scales_full_scale_int16_to_unit_range(tmp_path: Path) -> None:
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    soundfile.write(tmp_path / "edge.wav", pcm, RATE, subtype="PCM_16")
    waveform, _ = read_audio(tmp_path / "edge.wav")
    assert waveform[0].tolist() == [-1.0, -0.5, 0.0, 0.5, 32767 / 32768]


def test_read_audio_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"audio file not found .*missing\.wav"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        read_audio(tmp_path)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match=r"could not decode audio file .*corrupt\.wav"):
        read_audio(tmp_path / "corrupt.wav")
    with pytest.raises(TypeError, match=r"audio path must be a str or os\.PathLike, got int"):
        read_audio(3)  # type: ignore[arg-type]


def test_cached_resampler_equals_torchaudio_functional_resample() -> None:
    from modal_tf.tokenizers.waveform import resampler

    wave = torch.randn(44100, generator=torch.Generator().manual_seed(0)) * 0.1
    expected = torchaudio.functional.resample(wave, 44100, 16000)
    torch.testing.assert_close(resampler(44100, 16000)(wave), expected, rtol=0, atol=1e-5)  # float32 rounding
    assert resampler(44100, 16000) is resampler(44100, 16000)  # built once per rate pair
    via_tokenizer = SpectrogramTokenizer().features(Audio(wave, 44100))
    direct = SpectrogramTokenizer().features(Audio(expected, 16000))
    torch.testing.assert_close(via_tokenizer, direct, rtol=0, atol=1e-5)


def test_batch_features_equal_one_clip_features_in_order() -> None:
    tokenizer = SpectrogramTokenizer(n_mels=16)
    clips = [
        Audio(sine(0.5, hertz=440.0), RATE),
        Audio(sine(0.3, hertz=880.0), RATE),  # another length: its own group
        Audio(sine(0.5, rate=8000, hertz=440.0), 8000),  # another rate: resampled in its own group
        Audio(sine(0.5, hertz=1000.0), RATE),  # joins the first clip's group
        Audio(torch.zeros(2, RATE // 2), RATE),  # stereo silence, same length and rate as the first
    ]
    batched = tokenizer.batch_features(clips, chunk=2)  # the first group spans two chunks
    assert len(batched) == len(clips)
    for clip, features in zip(clips, batched, strict=True):
        torch.testing.assert_close(features, tokenizer.features(clip), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="chunk must be a positive"):
        tokenizer.batch_features(clips, chunk=0)
