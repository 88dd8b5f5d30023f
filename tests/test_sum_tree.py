import numpy as np
import pytest

from tfrl.replay import PrioritizedReplayBuffer, SumTree


def _rows(count, start=0):
    values = np.arange(start, start + count, dtype=np.float32)
    return (
        np.stack([values, -values], axis=1),
        values.astype(np.int64),
        values,
        np.stack([values + 1, -values], axis=1),
        np.zeros(count),
    )


def _assert_consistent(tree: SumTree):
    """Every internal node holds the sum of its two children."""
    internal = np.arange(1, tree.leaf_count)
    np.testing.assert_allclose(
        tree.nodes[internal], tree.nodes[2 * internal] + tree.nodes[2 * internal + 1], rtol=1e-12
    )


@pytest.mark.parametrize("capacity", [1, 5, 64, 1000])
def test_total_equals_sum_of_leaves_after_random_updates(capacity):
    tree, rng = SumTree(capacity), np.random.default_rng(capacity)
    expected = np.zeros(capacity)
    for _ in range(50):
        indices = rng.integers(0, capacity, size=rng.integers(1, 40))  # repeats included: the last write wins
        priorities = rng.uniform(0, 10, size=len(indices))
        tree.update(indices, priorities)
        for index, priority in zip(indices, priorities, strict=True):
            expected[index] = priority
    np.testing.assert_array_equal(tree.priorities(), expected)
    assert tree.total == pytest.approx(expected.sum(), rel=1e-12)
    _assert_consistent(tree)
    rebuilt = SumTree(capacity)
    rebuilt.rebuild(expected)
    np.testing.assert_allclose(rebuilt.nodes, tree.nodes, rtol=1e-12)


def test_find_maps_cumulative_sums_to_leaves_and_skips_zero_priorities():
    tree = SumTree(6)
    tree.update(np.arange(6), [1.0, 0.0, 2.0, 0.0, 0.0, 3.0])
    values = [0.0, 0.999, 1.0, 2.5, 2.999, 3.0, 5.999]
    np.testing.assert_array_equal(tree.find(values), [0, 0, 2, 2, 2, 5, 5])
    uniform = np.random.default_rng(0).uniform(0, tree.total, 10_000)
    assert set(tree.find(uniform)) == {0, 2, 5}


def test_sampling_frequencies_are_proportional_to_priorities():
    memory = PrioritizedReplayBuffer(16, (2,), alpha=1.0, epsilon=1e-6)
    memory.add(*_rows(10))
    td_errors = np.arange(1.0, 11.0)
    memory.update_priorities(np.arange(10), td_errors)
    batch = memory.sample(batch_size=100, num_batches=200, rng=np.random.default_rng(3), beta=0.5)
    counts = np.bincount(batch["indices"].ravel(), minlength=16)
    assert counts[10:].sum() == 0  # slots never written are never drawn
    expected = 20_000 * td_errors / td_errors.sum()
    chi_square = ((counts[:10] - expected) ** 2 / expected).sum()
    assert chi_square < 27.9  # p = 0.001 for 9 degrees of freedom
    # every field of a drawn row belongs to the same transition
    np.testing.assert_array_equal(batch["actions"], batch["indices"])
    np.testing.assert_array_equal(batch["observations"][..., 0], batch["rewards"])


def test_importance_weights_are_normalised_by_their_batch_maximum():
    memory = PrioritizedReplayBuffer(4, (2,), alpha=1.0, epsilon=1e-6)
    memory.add(*_rows(4))
    memory.update_priorities(np.arange(4), [1.0, 2.0, 3.0, 4.0])
    batch = memory.sample(batch_size=8, num_batches=3, rng=np.random.default_rng(0), beta=0.4)
    probabilities = (np.array([1.0, 2.0, 3.0, 4.0]) + 1e-6) / (10.0 + 4e-6)
    raw = (4 * probabilities[batch["indices"]]) ** -0.4
    np.testing.assert_allclose(batch["weights"], raw / raw.max(axis=1, keepdims=True), rtol=1e-6)
    assert batch["weights"].max() == pytest.approx(1.0) and batch["weights"].dtype == np.float32
    # β = 1 undoes the sampling bias exactly: weight ∝ 1 / probability
    full = memory.sample(batch_size=8, num_batches=1, rng=np.random.default_rng(1), beta=1.0)
    np.testing.assert_allclose(
        full["weights"] * probabilities[full["indices"]],
        (full["weights"] * probabilities[full["indices"]])[0, 0],
        rtol=1e-5,
    )


def test_new_transitions_get_the_largest_priority_seen():
    memory = PrioritizedReplayBuffer(8, (2,), alpha=0.5, epsilon=0.01)
    memory.add(*_rows(2))
    np.testing.assert_array_equal(memory.tree.priorities([0, 1]), [1.0, 1.0])
    memory.update_priorities(np.array([0, 1]), np.array([-8.99, 0.0]))  # the sign of a TD error does not matter
    np.testing.assert_allclose(memory.tree.priorities([0, 1]), [3.0, 0.1])
    memory.add(*_rows(1, start=2))
    assert memory.tree.priorities([2])[0] == pytest.approx(3.0)
    # a wrapped-around slot loses its old priority to the new transition's
    memory.update_priorities(np.array([2]), np.array([0.0]))
    memory.add(*_rows(6, start=3))  # slots 3..7 then 0
    assert memory.tree.priorities([0])[0] == pytest.approx(3.0)
    assert memory.tree.total == pytest.approx(memory.tree.priorities().sum())


def test_state_round_trip_rebuilds_the_tree():
    memory = PrioritizedReplayBuffer(8, (2,))
    memory.add(*_rows(5))
    memory.update_priorities(np.arange(5), np.linspace(0.1, 4.0, 5))
    restored = PrioritizedReplayBuffer(8, (2,))
    restored.load_state(memory.state())
    np.testing.assert_array_equal(restored.tree.nodes, memory.tree.nodes)
    assert restored.max_priority == memory.max_priority and len(restored) == 5
