"""Double DQN, Dueling DQN, prioritized replay, n-step returns and discretised actions."""

import json

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.agents import ALGORITHMS, make_config
from tfrl.agents.dqn import DQNAgent, DQNConfig, double_q_learning_targets, q_learning_targets
from tfrl.checkpoint import load_numpy_state, save_numpy_state
from tfrl.cli import main
from tfrl.envs import DiscretizeActions, action_grid, make_env
from tfrl.errors import ConfigError, EnvError
from tfrl.logger import read_jsonl
from tfrl.nets import QNetwork, dueling_aggregate
from tfrl.replay import NStepCollector, PrioritizedReplayBuffer
from tfrl.training import load_run

OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTIONS = gym.spaces.Discrete(3)


def test_double_q_targets_evaluate_the_online_argmax_with_the_target_net():
    online = tf.constant([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])
    target = tf.constant([[4.0, 0.5, 9.0], [2.0, 7.0, -1.0]])
    rewards, terminated = tf.constant([1.0, 2.0]), tf.constant([0.0, 1.0])
    # online picks a' = 1 and a' = 0; the target net says 0.5 and 2.0 for them (plain DQN would take 9 and 7)
    np.testing.assert_allclose(
        double_q_learning_targets(rewards, terminated, online, target, 0.9).numpy(), [1.0 + 0.9 * 0.5, 2.0]
    )
    np.testing.assert_allclose(q_learning_targets(rewards, terminated, target, 0.9).numpy(), [1.0 + 0.9 * 9.0, 2.0])
    # per-row discounts γ^k for k-step returns
    np.testing.assert_allclose(
        q_learning_targets(rewards, tf.zeros(2), target, tf.constant([0.5, 0.125])).numpy(),
        [1.0 + 0.5 * 9.0, 2.0 + 0.125 * 7.0],
    )


def test_n_step_windows_flush_on_termination_and_bootstrap_after_truncation():
    collector = NStepCollector(n=3, gamma=0.5)

    def step(t, rewards, terminated, truncated):
        observations = np.array([[0.0, t], [1.0, t]], np.float32)
        return collector.add(
            observations,
            np.array([t, t]),
            np.array(rewards),
            observations + np.array([0.0, 1.0]),
            np.array(terminated),
            np.array(truncated),
        )

    assert step(0, [1.0, 1.0], [False, False], [False, False]) is None
    # env 1 is truncated after two steps: both its windows flush, bootstrapping from its last observation
    out = step(1, [2.0, 1.0], [False, False], [False, True])
    np.testing.assert_allclose(out["rewards"], [1.0 + 0.5 * 1.0, 1.0])
    np.testing.assert_array_equal(out["observations"], [[1, 0], [1, 1]])
    np.testing.assert_array_equal(out["next_observations"], [[1, 2], [1, 2]])
    np.testing.assert_array_equal(out["terminated"], [0, 0])
    np.testing.assert_array_equal(out["bootstrap_steps"], [2, 1])
    # env 0's first window is full after three steps: R = 1 + 0.5·2 + 0.25·3
    out = step(2, [3.0, 10.0], [False, False], [False, False])
    np.testing.assert_allclose(out["rewards"], [2.75])
    np.testing.assert_array_equal(out["next_observations"], [[0, 3]])
    np.testing.assert_array_equal(out["bootstrap_steps"], [3])
    # env 0 terminates: one full window, then the two shorter ones, none bootstrapping
    out = step(3, [4.0, 10.0], [True, False], [False, False])
    np.testing.assert_allclose(out["rewards"], [2.0 + 0.5 * 3.0 + 0.25 * 4.0, 3.0 + 0.5 * 4.0, 4.0])
    np.testing.assert_array_equal(out["observations"][:, 1], [1, 2, 3])
    np.testing.assert_array_equal(out["next_observations"], [[0, 4]] * 3)
    np.testing.assert_array_equal(out["terminated"], [1, 1, 1])
    np.testing.assert_array_equal(out["bootstrap_steps"], [3, 2, 1])
    np.testing.assert_array_equal(out["actions"], [1, 2, 3])


@pytest.mark.parametrize("double", [False, True])
def test_training_call_uses_double_targets_and_k_step_discounts(double):
    config = DQNConfig(double=double, prioritized=True, gamma=0.9, hidden_sizes=(8,), target_update_interval=1_000)
    agent = DQNAgent(config, OBSERVATIONS, ACTIONS)
    for weight in agent.target_network.weights:  # make the target net differ from the online one
        weight.assign(tf.random.stateless_normal(weight.shape, seed=[1, 2]))
    rng = np.random.default_rng(0)
    observations, next_observations = rng.normal(size=(2, 1, 16, 4)).astype(np.float32)
    actions = rng.integers(0, 3, (1, 16))
    rewards = rng.normal(size=(1, 16)).astype(np.float32)
    terminated = (rng.random((1, 16)) < 0.3).astype(np.float32)
    steps = rng.integers(1, 4, (1, 16)).astype(np.int32)

    online_next = agent.q_network(next_observations[0]).numpy()
    target_next = agent.target_network(next_observations[0]).numpy()
    chosen = online_next.argmax(axis=1) if double else target_next.argmax(axis=1)
    expected_targets = rewards[0] + 0.9 ** steps[0] * (1 - terminated[0]) * target_next[np.arange(16), chosen]
    q_taken = agent.q_network(observations[0]).numpy()[np.arange(16), actions[0]]

    _, _, td_errors = agent._train(
        observations, actions, rewards, next_observations, terminated, steps, np.ones((1, 16), np.float32)
    )
    np.testing.assert_allclose(td_errors.numpy()[0], np.abs(expected_targets - q_taken), rtol=1e-4, atol=1e-5)


def test_importance_weights_scale_the_loss():
    config = DQNConfig(hidden_sizes=(8,), learning_rate=1e-9, loss="mse", prioritized=True)
    agent = DQNAgent(config, OBSERVATIONS, ACTIONS)
    rng = np.random.default_rng(1)
    batch = [
        rng.normal(size=(1, 8, 4)).astype(np.float32),
        rng.integers(0, 3, (1, 8)),
        rng.normal(size=(1, 8)).astype(np.float32),
        rng.normal(size=(1, 8, 4)).astype(np.float32),
        np.zeros((1, 8), np.float32),
        np.ones((1, 8), np.int32),
    ]
    weights = np.linspace(0.1, 1.0, 8, dtype=np.float32)[None]
    loss, _, td_errors = agent._train(*batch, weights)
    assert float(loss) == pytest.approx(float(np.mean(weights * td_errors.numpy() ** 2)), rel=1e-4)


def test_dueling_aggregation():
    values = tf.constant([[1.0], [2.0]])
    advantages = tf.constant([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    np.testing.assert_allclose(dueling_aggregate(values, advantages).numpy(), [[0.0, 1.0, 2.0], [1.0, 1.0, 4.0]])

    network = QNetwork(5, (16,), dueling=True)
    observations = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    q_values = network(observations).numpy()
    features = network.features(observations)
    values = network.head.value(features).numpy()
    advantages = network.head.advantages(features).numpy()
    np.testing.assert_allclose(
        q_values, values + advantages - advantages.mean(axis=1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(q_values.mean(axis=1), values[:, 0], rtol=1e-5, atol=1e-6)  # mean Q is V
    clone = QNetwork.from_config(network.get_config())
    assert clone.dueling and clone.num_actions == 5


def test_registry_presets_are_dqn_with_one_switch_on():
    assert make_config("double-dqn").double and not make_config("double-dqn").dueling
    assert make_config("dueling-dqn").dueling and not make_config("dueling-dqn").double
    assert not make_config("dqn").double and not make_config("dqn").dueling
    tutorial = make_config("double-dqn", "tutorial", {"learning_rate": "0.5"})
    assert tutorial.double and tutorial.hidden_sizes == (10,) and tutorial.learning_rate == 0.5
    assert not make_config("double-dqn", overrides={"double": "false"}).double
    assert ALGORITHMS["double-dqn"].agent == ALGORITHMS["dqn"].agent
    with pytest.raises(ConfigError, match="n_step=0"):
        make_config("dqn", overrides={"n_step": 0})


def test_action_grid_and_discretize_wrapper():
    np.testing.assert_allclose(
        action_grid(gym.spaces.Box(-2.0, 2.0, (1,)), 11)[:, 0], np.linspace(-2, 2, 11), atol=1e-6
    )
    grid = action_grid(gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32)), 3)
    assert grid.shape == (9, 2) and grid[0].tolist() == [0.0, -1.0] and grid[-1].tolist() == [1.0, 1.0]
    env = make_env("Pendulum-v1", discretize=11)
    assert isinstance(env, DiscretizeActions) and env.action_space == gym.spaces.Discrete(11)
    env.reset(seed=0)
    env.step(10)
    assert env.unwrapped.last_u == pytest.approx(2.0)
    env.step(3)
    assert env.unwrapped.last_u == pytest.approx(-0.8)
    env.close()
    with pytest.raises(EnvError, match="only a Box action space can be discretised"):
        make_env("CartPole-v1", discretize=4)
    with pytest.raises(EnvError, match="at least 2"):
        make_env("Pendulum-v1", discretize=1)


def test_prioritized_n_step_agent_checkpoints_its_priorities(tmp_path):
    config = DQNConfig(
        prioritized=True, n_step=2, learning_starts=8, train_freq=8, gradient_steps=2, batch_size=4, hidden_sizes=(8,)
    )
    agent = DQNAgent(config, OBSERVATIONS, ACTIONS)
    rng = np.random.default_rng(0)
    for _ in range(6):
        agent.observe(
            rng.normal(size=(4, 4)),
            rng.integers(0, 3, 4),
            rng.normal(size=4),
            rng.normal(size=(4, 4)),
            np.zeros(4),
            np.zeros(4, bool),
        )
    assert isinstance(agent.replay, PrioritizedReplayBuffer) and len(agent.replay) == 20  # 24 steps, 4 windows open
    assert not np.allclose(agent.replay.tree.priorities()[:20], 1.0)  # training set priorities from TD errors
    assert set(agent.replay.bootstrap_steps[:20]) == {2}
    save_numpy_state(tmp_path / "state.npz", agent.numpy_state())
    restored = DQNAgent(config, OBSERVATIONS, ACTIONS)
    restored.load_numpy_state(load_numpy_state(tmp_path / "state.npz"))
    np.testing.assert_array_equal(restored.replay.tree.nodes, agent.replay.tree.nodes)


def test_discretised_pendulum_through_the_cli_exports_real_torques(tmp_path, capsys):
    argv = [
        "train",
        "dqn",
        "--env",
        "Pendulum-v1",
        "--discretize",
        "5",
        "--steps",
        "600",
        "--eval-episodes",
        "2",
        "--set",
        "learning_starts=200",
        "--logdir",
        str(tmp_path / "runs"),
        "--export-dir",
        str(tmp_path / "models"),
        "--no-progress",
    ]
    assert main(argv) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    settings, _ = load_run(run_dir)
    assert settings.discretize == 5
    export = tmp_path / "models" / "dqn-Pendulum-v1"
    metadata = json.loads((export / "assets" / "tfrl.json").read_text())
    assert metadata["action_space"]["type"] == "Box" and metadata["discretize"] == 5
    assert metadata["action_grid"] == [[-2.0], [-1.0], [0.0], [1.0], [2.0]]
    policy = tf.saved_model.load(str(export))
    observations = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    torques = policy.action(observations).numpy()
    indices = policy.q_values(observations).numpy().argmax(axis=1)
    np.testing.assert_allclose(torques[:, 0], np.linspace(-2, 2, 5)[indices])
    # evaluate drives the raw env with the exported torques
    capsys.readouterr()
    assert main(["evaluate", str(export), "--episodes", "2"]) == 0
    assert "on Pendulum-v1" in capsys.readouterr().out
    # run.json files from before discretize existed still load
    saved = json.loads((run_dir / "run.json").read_text())
    del saved["settings"]["discretize"]
    (run_dir / "run.json").write_text(json.dumps(saved))
    assert load_run(run_dir)[0].discretize is None


@pytest.fixture(scope="module")
def option_runs(tmp_path_factory):
    """One short CartPole-v1 run per option of the DQN family (dueling through its registry name)."""
    root = tmp_path_factory.mktemp("family")
    runs = {}
    for name, algorithm, overrides in [
        ("double", "double-dqn", {}),
        ("dueling", "dueling-dqn", {}),
        ("prioritized", "dqn", {"prioritized": True}),
        ("n_step", "dqn", {"n_step": 3}),
    ]:
        runs[name] = tfrl.train(
            algorithm,
            "CartPole-v1",
            overrides=overrides,
            seed=0,
            total_steps=20_000,
            logdir=root / "runs",
            export_dir=root / "saved_models",
            progress=False,
        )
    return runs


@pytest.mark.parametrize("option", ["double", "dueling", "prioritized", "n_step"])
def test_each_option_learns_cartpole(option_runs, option):
    result = option_runs[option]
    evaluations = [row["mean"] for row in read_jsonl(result.run_dir / "evaluations.jsonl")]
    assert max(evaluations) >= 150, evaluations  # a random policy averages about 22
    assert getattr(result.agent.config, option) == (3 if option == "n_step" else True)


def test_dueling_export_round_trip(option_runs):
    result = option_runs["dueling"]
    assert result.export_path.name == "dueling-dqn-CartPole-v1"
    metadata = json.loads((result.export_path / "assets" / "tfrl.json").read_text())
    assert metadata["algorithm"] == "dueling-dqn" and metadata["config"]["dueling"] is True
    observations = np.random.default_rng(2).uniform(-0.5, 0.5, (32, 4)).astype(np.float32)
    with result.best.applied():  # the export is the best-evaluated policy
        expected = result.agent.q_network(observations).numpy()
    policy = tf.saved_model.load(str(result.export_path))
    np.testing.assert_allclose(policy.q_values(observations).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(policy.action(observations).numpy(), expected.argmax(axis=1))
    reloaded = keras.models.load_model(result.export_path / "q_network.keras")
    assert {"head_value", "head_advantages"} <= {layer.name for layer in reloaded.layers}  # V and A
    np.testing.assert_allclose(reloaded(observations).numpy(), expected, rtol=1e-5, atol=1e-6)
