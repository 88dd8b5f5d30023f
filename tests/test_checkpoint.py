import re

import numpy as np
import pytest

from tfrl.agents.dqn import DQNConfig
from tfrl.checkpoint import Checkpointer, load_numpy_state, save_numpy_state
from tfrl.errors import CheckpointError
from tfrl.training import RunSettings, build_agent


def _agent(seed=0):
    return build_agent(
        RunSettings("dqn", "CartPole-v1", seed=seed), DQNConfig(learning_starts=10, train_freq=5, batch_size=8)
    )


def _fill(agent, steps):
    rng = np.random.default_rng(3)
    for _ in range(steps):
        agent.observe(
            rng.normal(size=(2, 4)),
            rng.integers(0, 2, 2),
            rng.normal(size=2),
            rng.normal(size=(2, 4)),
            np.zeros(2),
            np.zeros(2, bool),
        )


def test_numpy_state_round_trip_with_nested_arrays_and_json(tmp_path):
    state = {
        "env_steps": 7,
        "replay": {"rewards": np.arange(3.0), "position": np.asarray(3)},
        "rng": np.random.default_rng(5).bit_generator.state,
    }
    save_numpy_state(tmp_path / "state.npz", state)
    loaded = load_numpy_state(tmp_path / "state.npz")
    assert loaded["env_steps"] == 7 and loaded["rng"] == state["rng"]
    np.testing.assert_array_equal(loaded["replay"]["rewards"], np.arange(3.0))


def test_restore_brings_back_networks_optimizer_replay_and_rng(tmp_path):
    agent = _agent()
    _fill(agent, 20)
    Checkpointer(tmp_path, agent).save(agent.env_steps)
    expected_action_draws = agent.rng.integers(0, 1000, 5)

    fresh = _agent(seed=1)
    step = Checkpointer(tmp_path, fresh).restore()
    assert step == agent.env_steps == fresh.env_steps == 40
    for a, b in zip(
        agent.q_network.weights + agent.target_network.weights,
        fresh.q_network.weights + fresh.target_network.weights,
        strict=True,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.optimizer.iterations.numpy()) == int(agent.optimizer.iterations.numpy()) > 0
    np.testing.assert_array_equal(fresh.replay.rewards[:40], agent.replay.rewards[:40])
    np.testing.assert_array_equal(fresh.rng.integers(0, 1000, 5), expected_action_draws)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"no complete checkpoint in.*before its first checkpoint"):
        Checkpointer(tmp_path / "nothing", _agent()).restore()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    agent = _agent()
    _fill(agent, 10)
    Checkpointer(tmp_path, agent).save(agent.env_steps)
    for data_file in tmp_path.glob("ckpt-*.data-*"):
        data_file.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        Checkpointer(tmp_path, _agent()).restore()


def test_missing_replay_state_is_a_clear_error(tmp_path):
    agent = _agent()
    _fill(agent, 10)
    Checkpointer(tmp_path, agent).save(agent.env_steps)
    (tmp_path / f"state-{agent.env_steps}.npz").unlink()
    with pytest.raises(CheckpointError, match=re.escape("step 20: only ckpt-20.index was written")):
        Checkpointer(tmp_path, _agent()).restore()


def test_old_state_files_are_pruned_with_their_checkpoints(tmp_path):
    agent = _agent()
    checkpointer = Checkpointer(tmp_path, agent, max_to_keep=2)
    for _ in range(4):
        _fill(agent, 5)
        checkpointer.save(agent.env_steps)
    assert sorted(int(path.stem.split("-")[1]) for path in tmp_path.glob("state-*.npz")) == [30, 40]


def _three_checkpoints(tmp_path):
    agent = _agent()
    checkpointer = Checkpointer(tmp_path, agent)
    for _ in range(3):
        _fill(agent, 10)
        checkpointer.save(agent.env_steps)
    return agent, checkpointer


def test_a_truncated_state_file_falls_back_to_the_older_intact_checkpoint(tmp_path):
    _, checkpointer = _three_checkpoints(tmp_path)
    assert checkpointer.steps() == [60, 40, 20]
    newest = tmp_path / "state-60.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    fresh = Checkpointer(tmp_path, _agent(seed=1))
    assert fresh.restore() == 40 and fresh.agent.env_steps == 40
    assert len(fresh.skipped) == 1 and "step 60" in fresh.skipped[0] and "state-60.npz is truncated" in fresh.skipped[0]


def test_checkpoints_are_found_without_the_index_file_and_half_written_ones_are_named(tmp_path):
    _three_checkpoints(tmp_path)
    (tmp_path / "checkpoint").unlink(missing_ok=True)
    (tmp_path / "ckpt-60.index").unlink()  # killed before TensorFlow wrote its index: incomplete
    fresh = Checkpointer(tmp_path, _agent(seed=1))
    assert fresh.restore() == 40
    assert fresh.skipped == ["skipped checkpoint at step 60: only state-60.npz was written"]


def test_only_the_newest_three_checkpoints_are_kept(tmp_path):
    agent, checkpointer = _three_checkpoints(tmp_path)
    _fill(agent, 10)
    checkpointer.save(agent.env_steps)
    assert checkpointer.steps() == [80, 60, 40]
    assert not list(tmp_path.glob("*-20.*"))


def test_every_checkpoint_damaged_is_one_clear_error_naming_each(tmp_path):
    _three_checkpoints(tmp_path)
    for state_file in tmp_path.glob("state-*.npz"):
        state_file.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"no complete checkpoint.*step 60.*step 40.*step 20"):
        Checkpointer(tmp_path, _agent()).restore()


def test_a_checkpoint_never_holds_non_finite_weights(tmp_path):
    from tfrl.errors import TrainingDiverged

    agent = _agent()
    weights = agent.q_network.get_weights()
    weights[0][0, 0] = np.nan
    agent.q_network.set_weights(weights)
    with pytest.raises(TrainingDiverged, match="NaN or infinite"):
        Checkpointer(tmp_path, agent).save(10)
    assert not list(tmp_path.glob("*"))
