"""Simulated inertial (IMU) windows of four activities, generated offline and seeded.

Notation: C = 6 channels (accelerometer x, y, z in m/s^2, then gyroscope x, y, z in rad/s),
S samples per window, f step (or jump) frequency in Hz, theta the gait phase in radians,
g = 9.81 m/s^2.

A phone worn at the hip, sampled at 50 Hz in windows of 128 samples (2.56 s), the setting
of the UCI HAR data set (Anguita et al. 2013, https://archive.ics.uci.edu/dataset/240).
The body frame is x forward, y left, z up; an accelerometer reads specific force, so a
phone at rest reads +g on z. Per activity:

* standing: gravity, slow postural sway (0.1-0.5 Hz, a few cm/s^2) and tiny rotations;
* walking: f in 1.4-2.5 Hz; vertical bounce 1.5-6 m/s^2 with a second harmonic, forward
  surge a quarter period ahead, lateral sway at half the step rate (one sway per stride),
  pitch/roll/yaw rates scaled by 0.5-1.5 rad/s;
* running: f in 2.0-3.2 Hz; bounce 3.5-12 m/s^2, stronger harmonics, rates scaled by 1-3 rad/s;
* jumping: f in 1.2-2.4 Hz; a flight phase in free fall (vertical reading near 0) and a
  half-sine landing pulse whose mean over a cycle is g (the mean specific force of any
  periodic motion equals gravity), so peaks reach 3-5 g.

Walking and running overlap on purpose (2.0-2.5 Hz, 3.5-6 m/s^2, 1-1.5 rad/s): some windows are ambiguous.
Every window also draws a per-person gain (0.8-1.2), a cadence that drifts by up to 5 %, a
random starting phase, a random device orientation (any heading, tilted up to 30 degrees, the
same rotation for both sensors), per-channel sensor bias and white noise: a model must learn
the rhythm and shape of the motion, not where gravity points or when a step starts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

ACTIVITIES = ("standing", "walking", "running", "jumping")
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
SAMPLE_RATE = 50
GRAVITY = 9.81
MAX_TILT = math.radians(30.0)
TAU = 2 * math.pi  # one full turn: phases are drawn uniformly from [0, TAU)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A random device orientation ``(3, 3)``: any heading about z, then a tilt about a horizontal axis."""
    heading = rng.uniform(0.0, TAU)
    cos, sin = math.cos(heading), math.sin(heading)
    yaw = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    axis_angle = rng.uniform(0.0, TAU)
    axis = np.array([math.cos(axis_angle), math.sin(axis_angle), 0.0])
    tilt = rng.uniform(0.0, MAX_TILT)
    # Rodrigues' formula: R = I + sin(a) K + (1 - cos(a)) K^2, K the cross-product matrix of the unit axis.
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    tilt_matrix = np.eye(3) + math.sin(tilt) * cross + (1 - math.cos(tilt)) * cross @ cross
    return tilt_matrix @ yaw


def _phase(f: float, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Gait phase ``(S,)``: a cadence drifting by up to 5 % around ``f``, integrated from a random start."""
    time = np.arange(samples) / SAMPLE_RATE
    drift = 1 + rng.uniform(0.0, 0.05) * np.sin(TAU * rng.uniform(0.1, 0.4) * time + rng.uniform(0, TAU))
    return rng.uniform(0.0, TAU) + TAU * np.cumsum(f * drift) / SAMPLE_RATE


class Gait(NamedTuple):
    """Ranges a walking or running window draws from (uniformly)."""

    cadence: tuple[float, float]  # steps per second, Hz
    bounce: tuple[float, float]  # vertical amplitude, m/s^2
    surge: tuple[float, float]  # forward amplitude, m/s^2
    overtone: tuple[float, float]  # second-harmonic share of the bounce (heel strike sharpness)
    rates: tuple[float, float]  # scale of the angular rates, rad/s


GAITS = {
    1: Gait(cadence=(1.4, 2.5), bounce=(1.5, 6.0), surge=(0.8, 3.0), overtone=(0.2, 0.5), rates=(0.5, 1.5)),
    2: Gait(cadence=(2.0, 3.2), bounce=(3.5, 12.0), surge=(2.0, 5.0), overtone=(0.3, 0.7), rates=(1.0, 3.0)),
}


def _periodic_gait(gait: Gait, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame linear acceleration and angular rate, each ``(3, S)``, of walking or running."""
    theta = _phase(rng.uniform(*gait.cadence), samples, rng)
    rates = rng.uniform(*gait.rates)
    overtone = rng.uniform(*gait.overtone)
    vertical = rng.uniform(*gait.bounce) * (np.sin(theta) + overtone * np.sin(2 * theta + rng.uniform(0, TAU)))
    surge = rng.uniform(*gait.surge)
    forward = surge * np.sin(theta + math.pi / 2 + rng.uniform(-0.3, 0.3))  # surge leads the bounce by ~1/4 step
    lateral = rng.uniform(0.3, 0.4) * surge * np.sin(theta / 2 + rng.uniform(0, TAU))  # one sway per stride
    roll = rng.uniform(0.1, 0.4) * rates * np.sin(theta / 2 + rng.uniform(0, TAU))
    pitch = rng.uniform(0.3, 1.0) * rates * np.sin(theta + rng.uniform(0, TAU))
    yaw = rng.uniform(0.1, 0.5) * rates * np.sin(theta / 2 + rng.uniform(0, TAU))
    return np.stack([forward, lateral, vertical]), np.stack([roll, pitch, yaw])


def _jumping(theta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame linear acceleration and angular rate ``(3, S)`` of jumping in place: flight, then landing."""
    contact = rng.uniform(0.3, 0.55)  # fraction of a cycle on the ground
    cycle = np.mod(theta, TAU) / TAU  # (S,) in [0, 1)
    peak = GRAVITY * math.pi / (2 * contact)  # a half-sine of this peak over `contact` averages to g
    reading = np.where(cycle < contact, peak * np.sin(math.pi * cycle / contact), 0.0)
    vertical = reading - GRAVITY  # linear acceleration; activity_window adds gravity back, as for every activity
    sway = rng.uniform(0.2, 1.0) * np.sin(theta + rng.uniform(0, TAU))
    lateral = rng.uniform(0.1, 0.5) * np.sin(theta + rng.uniform(0, TAU))
    pitch = rng.uniform(0.1, 0.5) * np.sin(theta + rng.uniform(0, TAU))
    return np.stack([sway, lateral, vertical]), np.stack([0.3 * pitch, pitch, 0.2 * pitch])


def _standing(samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame linear acceleration and angular rate ``(3, S)`` of postural sway."""
    theta = _phase(rng.uniform(0.1, 0.5), samples, rng)
    sway = np.stack([rng.uniform(0.02, 0.3) * np.sin(theta + rng.uniform(0, TAU)) for _ in range(3)])
    rates = np.stack([rng.uniform(0.01, 0.1) * np.sin(theta + rng.uniform(0, TAU)) for _ in range(3)])
    return sway, rates


def activity_window(activity: int, rng: np.random.Generator, samples: int = 128, noise: float = 1.0) -> np.ndarray:
    """One device-frame IMU window ``(C, S)`` float32 of ``ACTIVITIES[activity]``.

    ``noise`` is the accelerometer's white-noise standard deviation in m/s^2 (the gyroscope gets a
    tenth of it in rad/s); the default 1.0 stands for sensor noise plus the jitter of a real body.
    """
    if activity == 0:
        motion, rates = _standing(samples, rng)
    elif activity in GAITS:
        motion, rates = _periodic_gait(GAITS[activity], samples, rng)
    elif activity == 3:
        motion, rates = _jumping(_phase(rng.uniform(1.2, 2.4), samples, rng), rng)
    else:
        raise ValueError(f"activity must be an index into {ACTIVITIES}, got {activity!r}")
    gain = rng.uniform(0.8, 1.2)
    force = gain * motion + np.array([0.0, 0.0, GRAVITY])[:, None]  # (3, S) specific force, body frame
    rotation = _rotation(rng)  # device-to-body; its transpose takes body vectors into the device frame
    accelerometer = rotation.T @ force  # (3, S)
    gyroscope = rotation.T @ (gain * rates)  # (3, S)
    bias = np.concatenate([rng.normal(0.0, 0.1, 3), rng.normal(0.0, 0.02, 3)])[:, None]  # (C, 1)
    scale = np.array([noise] * 3 + [noise / 10] * 3)[:, None]  # (C, 1)
    window = np.concatenate([accelerometer, gyroscope]) + bias + scale * rng.standard_normal((6, samples))
    return window.astype(np.float32)  # (C, S)


def activity_windows(count: int, seed: int, samples: int = 128, noise: float = 1.0) -> list[tuple[np.ndarray, int]]:
    """``count`` ``(window (C, S) float32, activity index)`` pairs, classes balanced, in shuffled order.

    Raises:
        ValueError: a negative ``count``, ``samples`` < 1, or a negative or non-finite ``noise``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if not (isinstance(noise, int | float) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(ACTIVITIES))
    return [(activity_window(int(label), rng, samples, float(noise)), int(label)) for label in labels]
