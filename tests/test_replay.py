import numpy as np
import pytest

from tfrl.replay import ReplayBuffer


def _rows(start, count):
    values = np.arange(start, start + count, dtype=np.float32)
    return (
        np.stack([values, -values], axis=1),
        values.astype(np.int64),
        values,
        np.stack([values + 1, -values], axis=1),
        (values % 2).astype(np.float32),
    )


def test_add_fills_in_order_until_full():
    buffer = ReplayBuffer(5, (2,))
    buffer.add(*_rows(0, 3))
    assert len(buffer) == 3 and buffer.position == 3
    np.testing.assert_array_equal(buffer.rewards[:3], [0, 1, 2])


def test_wrap_around_overwrites_the_oldest_rows():
    buffer = ReplayBuffer(5, (2,))
    buffer.add(*_rows(0, 4))
    buffer.add(*_rows(4, 3))  # rows 4, 5, 6: 5 and 6 wrap to slots 0 and 1
    assert len(buffer) == 5 and buffer.position == 2
    np.testing.assert_array_equal(buffer.rewards, [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.next_observations[:, 0], buffer.rewards + 1)


def test_sample_shapes_and_only_stored_rows():
    buffer = ReplayBuffer(100, (2,))
    buffer.add(*_rows(10, 7))
    batch = buffer.sample(batch_size=32, num_batches=3, rng=np.random.default_rng(0))
    assert batch["observations"].shape == (3, 32, 2)
    assert batch["actions"].shape == (3, 32) and batch["actions"].dtype == np.int64
    assert set(batch["rewards"].ravel()) <= set(range(10, 17))
    # every field of one sampled row comes from the same transition
    np.testing.assert_array_equal(batch["observations"][..., 0], batch["rewards"])
    np.testing.assert_array_equal(batch["next_observations"][..., 0], batch["rewards"] + 1)


def test_sampling_is_uniform_over_stored_rows():
    buffer = ReplayBuffer(10, (2,))
    buffer.add(*_rows(0, 10))
    counts = np.bincount(buffer.sample(1000, 10, np.random.default_rng(1))["actions"].ravel(), minlength=10)
    expected = 1000.0
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 27.9  # p = 0.001 for 9 degrees of freedom


def test_state_round_trip_keeps_rows_and_position():
    buffer = ReplayBuffer(5, (2,))
    buffer.add(*_rows(0, 7))
    restored = ReplayBuffer(5, (2,))
    restored.load_state(buffer.state())
    assert restored.position == buffer.position and len(restored) == len(buffer)
    for name in ("observations", "actions", "rewards", "next_observations", "terminated"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(buffer, name))


def test_empty_buffer_and_bad_capacity_are_refused():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, (2,))
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, (2,)).sample(2, 1, np.random.default_rng(0))
