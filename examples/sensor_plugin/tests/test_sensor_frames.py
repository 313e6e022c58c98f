"""The sensor_frames plugin: entry point, the modal_tf conformance kit, normalisation, errors, data.

Run after installing the package (``pip install -e examples/sensor_plugin``):
``pytest examples/sensor_plugin/tests``. Notation: C channels, S samples, T tokens, F features.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from modal_tf_sensors import ACTIVITIES, CHANNELS, SensorFrameTokenizer, activity_windows
from modal_tf_sensors.simulate import activity_window

from modal_tf.testing import check_tokenizer
from modal_tf.tokenizers import ENTRY_POINT_GROUP, create_tokenizer, tokenizer_class, tokenizer_from_state

torch.set_num_threads(1)


def windows(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    """Simulated ``(6, S)`` windows of the given lengths, activities cycling."""
    rng = np.random.default_rng(seed)
    return [activity_window(index % len(ACTIVITIES), rng, length) for index, length in enumerate(lengths)]


def test_the_entry_point_names_this_distribution_and_class() -> None:
    entries = [entry for entry in entry_points(group=ENTRY_POINT_GROUP) if entry.name == "sensor_frames"]
    assert len(entries) == 1
    assert entries[0].dist is not None and entries[0].dist.name == "modal-tf-sensors"
    assert tokenizer_class("sensor_frames") is SensorFrameTokenizer


@pytest.mark.parametrize("normalize", [True, False])
def test_passes_the_conformance_kit(normalize: bool) -> None:
    # unequal lengths, a trailing partial frame (100 = 12 * 8 + 4) and a single frame
    check_tokenizer(create_tokenizer("sensor_frames", frame=8, normalize=normalize), windows([128, 100, 8, 37]))


def test_frames_are_flattened_time_major_with_time_coordinates() -> None:
    series = np.arange(2 * 7, dtype=np.float32).reshape(2, 7)  # (C, S): channel c, sample s holds 7 c + s
    tokens = SensorFrameTokenizer(channels=2, frame=3, normalize=False).encode(series)
    assert tokens.values.shape == (2, 6) and tokens.values.dtype == torch.float32  # (T, F): 7 // 3 frames
    # feature l * C + c is sample l of the frame on channel c
    assert tokens.values[1].tolist() == [3.0, 10.0, 4.0, 11.0, 5.0, 12.0]
    assert tokens.coords.tolist() == [[0], [1]]


def test_fit_standardises_each_channel_of_the_training_data() -> None:
    train = [window for window, _ in activity_windows(64, seed=3)]
    tokenizer = SensorFrameTokenizer(frame=8)
    assert tokenizer.requires_fit
    tokenizer.fit(iter(train))  # one pass: a generator is enough
    assert not tokenizer.requires_fit
    features = torch.cat([tokenizer.encode(window).values for window in train])  # (N * T, F)
    per_channel = features.reshape(-1, len(CHANNELS))  # (N * T * L, C): feature l * C + c
    assert torch.allclose(per_channel.mean(0), torch.zeros(len(CHANNELS)), atol=1e-4)
    assert torch.allclose(per_channel.std(0, correction=0), torch.ones(len(CHANNELS)), atol=1e-4)
    # gravity makes acc_z's raw mean large; standardising removed it
    assert tokenizer.mean is not None and tokenizer.mean[2] > 5.0


def test_a_constant_channel_is_centred_not_divided_by_zero() -> None:
    series = np.stack([np.full(16, 9.81), np.linspace(-1.0, 1.0, 16)])  # (2, 16)
    tokenizer = SensorFrameTokenizer(channels=2, frame=4)
    tokenizer.fit([series])
    assert tokenizer.std is not None and tokenizer.std[0] == 1.0
    values = tokenizer.encode(series).values
    assert torch.isfinite(values).all() and torch.allclose(values[:, 0::2], torch.zeros(4, 4), atol=1e-6)


def test_state_round_trips_through_json_and_rejects_bad_statistics() -> None:
    tokenizer = SensorFrameTokenizer(channels=6, frame=4, max_frames=64)
    tokenizer.fit(windows([64, 64]))
    copy = tokenizer_from_state(tokenizer.state_dict())
    assert isinstance(copy, SensorFrameTokenizer) and copy.config() == tokenizer.config()
    assert copy.mean == tokenizer.mean and copy.std == tokenizer.std
    with pytest.raises(ValueError, match="'mean' must be a list of 6 numbers"):
        SensorFrameTokenizer().load_fitted_state({"mean": [0.0], "std": [1.0] * 6})
    with pytest.raises(ValueError, match="'std' must be positive"):
        SensorFrameTokenizer().load_fitted_state({"mean": [0.0] * 6, "std": [0.0] * 6})


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ([[0.0] * 16] * 6, TypeError, "numpy.ndarray or torch.Tensor, got list; wrap a nested list"),
        (np.zeros((6, 16), dtype=bool), TypeError, "real numbers .* got numpy dtype bool"),
        (torch.zeros(6, 16, dtype=torch.complex64), TypeError, "got tensor dtype torch.complex64"),
        (np.zeros(16), ValueError, r"shape \(channels, samples\), got shape \(16,\)"),
        (np.zeros((16, 6)), ValueError, r"must have 6 channels \(rows\), got shape \(16, 6\); .* needs \.T"),
        (np.zeros((6, 5)), ValueError, "5 samples, fewer than one frame of 8"),
        (np.full((6, 16), np.nan), ValueError, "NaN or inf"),
        (np.zeros((6, 1000)), ValueError, "125 frames of 8, more than max_frames=100"),
    ],
)
def test_bad_input_gets_a_clear_error(raw: object, error: type[Exception], message: str) -> None:
    tokenizer = SensorFrameTokenizer(normalize=False, max_frames=100)
    with pytest.raises(error, match=message):
        tokenizer.encode(raw)


def test_misuse_is_reported_by_name() -> None:
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        SensorFrameTokenizer().encode(np.zeros((6, 16)))
    with pytest.raises(ValueError, match="frame must be a positive int, got 0"):
        SensorFrameTokenizer(frame=0)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        SensorFrameTokenizer(normalize="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples\\[1\\] must have 6 channels"):
        SensorFrameTokenizer().fit([np.zeros((6, 16)), np.zeros((3, 16))])
    with pytest.raises(ValueError, match="at least one series"):
        SensorFrameTokenizer().fit([])
    with pytest.raises(TypeError, match="wrap a single series in a list"):
        SensorFrameTokenizer().fit(np.zeros((6, 16)))


def test_the_simulator_is_seeded_balanced_and_distinct_per_seed() -> None:
    first, again, other = activity_windows(40, 7), activity_windows(40, 7), activity_windows(40, 8)
    assert all(np.array_equal(a, b) and x == y for (a, x), (b, y) in zip(first, again, strict=True))
    assert not np.array_equal(first[0][0], other[0][0])
    assert sorted(label for _, label in first) == sorted(list(range(len(ACTIVITIES))) * 10)
    assert first[0][0].shape == (len(CHANNELS), 128) and first[0][0].dtype == np.float32
    with pytest.raises(ValueError, match="activity must be an index"):
        activity_window(len(ACTIVITIES), np.random.default_rng(0))


def test_the_datamodule_fits_on_train_and_batches_padded_tokens() -> None:
    from modal_tf_sensors.data import ActivityData

    data = ActivityData(num_train=16, num_val=8, num_test=8, window=64, batch_size=4)
    data.setup("fit")
    assert data.task is not None and data.task.class_names == list(ACTIVITIES)
    tokenizer = data.task.inputs["sensor"]
    assert isinstance(tokenizer, SensorFrameTokenizer) and not tokenizer.requires_fit
    batch = next(iter(data.val_dataloader()))
    assert batch["inputs"]["sensor"].values.shape == (4, 8, 48)  # (B, T, F): 64 // 8 frames of 8 x 6
    assert batch["labels"].shape == (4,)
    with pytest.raises(ValueError, match=r"data\.window must be a positive int"):
        ActivityData(window=0)
