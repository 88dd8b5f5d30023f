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
    with pytest.raises(CheckpointError, match="no checkpoint in"):
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
    with pytest.raises(CheckpointError, match="missing or corrupt"):
        Checkpointer(tmp_path, _agent()).restore()


def test_old_state_files_are_pruned_with_their_checkpoints(tmp_path):
    agent = _agent()
    checkpointer = Checkpointer(tmp_path, agent, max_to_keep=2)
    for _ in range(4):
        _fill(agent, 5)
        checkpointer.save(agent.env_steps)
    assert sorted(int(path.stem.split("-")[1]) for path in tmp_path.glob("state-*.npz")) == [30, 40]
