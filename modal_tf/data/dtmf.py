"""Telephone keypad (DTMF) audio, generated offline: single keys and key sequences.

Each key is the sum of a low (row) and a high (column) sine, ITU-T Q.23:
rows 697/770/852/941 Hz, columns 1209/1336/1477/1633 Hz. To make it a real
task rather than "detect two sines", every clip draws: tone and gap lengths,
per-tone frequency drift (up to +-1.5 %, the Q.24 tolerance), twist (the two
tones' level ratio), overall gain, leading/trailing silence, and white noise at
a random SNR; sequences repeat keys, so a model must segment and count.
"""

from __future__ import annotations

import random

import numpy as np
import torch

KEYS = "123A456B789C*0#D"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
SAMPLE_RATE = 8000


def key_frequencies(key: str) -> tuple[float, float]:
    """``(row, column)`` frequencies of a keypad key."""
    if len(key) != 1 or key not in KEYS:
        raise ValueError(f"key must be one of {KEYS!r}, got {key!r}")
    index = KEYS.index(key)
    return ROWS[index // 4], COLUMNS[index % 4]


def _tone(key: str, samples: int, rng: random.Random) -> np.ndarray:
    low, high = key_frequencies(key)
    time = np.arange(samples) / SAMPLE_RATE
    drift = [1 + rng.uniform(-0.015, 0.015) for _ in range(2)]
    twist = 10 ** (rng.uniform(-4, 4) / 20)  # up to 4 dB between the two tones
    phases = [rng.uniform(0, 2 * np.pi) for _ in range(2)]
    wave = np.sin(2 * np.pi * low * drift[0] * time + phases[0]) + twist * np.sin(
        2 * np.pi * high * drift[1] * time + phases[1]
    )
    ramp = min(samples // 4, int(0.004 * SAMPLE_RATE))  # 4 ms fades avoid clicks that would give the key away
    if ramp:
        envelope = np.ones(samples)
        envelope[:ramp] = envelope[-ramp:][::-1] = np.linspace(0, 1, ramp)
        wave *= envelope
    return wave


def render_keys(keys: str, rng: random.Random, tone_ms: tuple[int, int], gap_ms: tuple[int, int]) -> torch.Tensor:
    """One clip ``(samples,)`` float32 in [-1, 1] dialling ``keys`` with random timing, level and noise."""
    parts = [np.zeros(int(rng.uniform(0.02, 0.12) * SAMPLE_RATE))]
    for index, key in enumerate(keys):
        if index:
            parts.append(np.zeros(int(rng.uniform(*gap_ms) / 1000 * SAMPLE_RATE)))
        parts.append(_tone(key, int(rng.uniform(*tone_ms) / 1000 * SAMPLE_RATE), rng))
    parts.append(np.zeros(int(rng.uniform(0.02, 0.12) * SAMPLE_RATE)))
    signal = np.concatenate(parts)
    tone_power = np.mean(signal[signal != 0] ** 2) if np.any(signal) else 1.0
    snr_db = rng.uniform(0, 30)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(
        0, np.sqrt(tone_power / 10 ** (snr_db / 10)), signal.shape
    )
    clip = signal + noise
    clip *= rng.uniform(0.05, 0.9) / max(1e-9, float(np.abs(clip).max()))
    return torch.from_numpy(clip.astype(np.float32))


def key_clips(count: int, seed: int) -> list[tuple[torch.Tensor, int]]:
    """``count`` single-key clips ``(waveform, index into KEYS)`` at 8 kHz, 40-250 ms tones."""
    rng = random.Random(seed)
    clips = []
    for _ in range(count):
        label = rng.randrange(len(KEYS))
        clips.append((render_keys(KEYS[label], rng, (40, 250), (0, 0)), label))
    return clips


def sequence_clips(count: int, seed: int, min_keys: int = 2, max_keys: int = 8) -> list[tuple[torch.Tensor, str]]:
    """``count`` dialled sequences ``(waveform, keys)``: 50-150 ms tones, 40-120 ms gaps, repeats likely."""
    if not 1 <= min_keys <= max_keys:
        raise ValueError(f"need 1 <= min_keys <= max_keys, got {min_keys}, {max_keys}")
    rng = random.Random(seed)
    clips = []
    for _ in range(count):
        keys = ""
        for _ in range(rng.randint(min_keys, max_keys)):
            keys += keys[-1] if keys and rng.random() < 0.3 else rng.choice(KEYS)  # 30 % repeats the last key
        clips.append((render_keys(keys, rng, (50, 150), (40, 120)), keys))
    return clips
