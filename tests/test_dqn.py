import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from tfrl.agents.dqn import DQNAgent, DQNConfig, linear_schedule, q_learning_targets
from tfrl.envs import final_observations, make_vector_env
from tfrl.errors import ConfigError, EnvError
from tfrl.nets import QNetwork, soft_update

OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTIONS = gym.spaces.Discrete(2)


def test_targets_bootstrap_unless_terminated():
    next_q = tf.constant([[1.0, 3.0], [2.0, -1.0]])
    targets = q_learning_targets(tf.constant([1.0, 1.0]), tf.constant([0.0, 1.0]), next_q, 0.9)
    np.testing.assert_allclose(targets.numpy(), [1.0 + 0.9 * 3.0, 1.0])


def test_truncated_episodes_store_their_real_last_observation_and_bootstrap():
    envs = make_vector_env("CartPole-v1", 2, max_episode_steps=3)
    _observations, _ = envs.reset(seed=0)
    for _ in range(3):
        next_observations, _, terminated, truncated, info = envs.step(np.zeros(2, np.int64))
    done = terminated | truncated
    assert truncated.all() and not terminated.any()
    stored = final_observations(next_observations, done, info)
    # the stored next observation is the episode's last one, not the reset observation
    np.testing.assert_array_equal(stored, np.stack(info["final_obs"]))
    assert not np.allclose(stored, next_observations)
    # and since only `terminated` goes into the target, a truncated step bootstraps
    targets = q_learning_targets(tf.ones(2), tf.constant(terminated, tf.float32), tf.ones((2, 2)), 0.5)
    np.testing.assert_allclose(targets.numpy(), [1.5, 1.5])
    envs.close()


def test_linear_epsilon_schedule():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 10_000) == pytest.approx(0.1)


def test_agent_epsilon_follows_env_steps():
    agent = DQNAgent(
        DQNConfig(exploration_steps=100, exploration_final_eps=0.1, learning_starts=10_000), OBSERVATIONS, ACTIONS
    )
    assert agent.epsilon == 1.0
    agent.observe(
        np.zeros((50, 4)), np.zeros(50, np.int64), np.zeros(50), np.zeros((50, 4)), np.zeros(50), np.zeros(50, bool)
    )
    assert agent.epsilon == pytest.approx(0.55)


def test_soft_and_hard_target_updates():
    source, target = QNetwork(2, (3,)), QNetwork(2, (3,))
    source(np.zeros((1, 4), np.float32)), target(np.zeros((1, 4), np.float32))
    before = [weight.numpy() for weight in target.weights]
    soft_update(target, source, 0.25)
    for old, new, online in zip(before, target.weights, source.weights, strict=True):
        np.testing.assert_allclose(new.numpy(), 0.25 * online.numpy() + 0.75 * old, rtol=1e-6)
    soft_update(target, source, 1.0)
    for new, online in zip(target.weights, source.weights, strict=True):
        np.testing.assert_array_equal(new.numpy(), online.numpy())


def test_training_calls_follow_train_freq_and_update_target_on_schedule():
    config = DQNConfig(
        learning_starts=8, train_freq=4, gradient_steps=3, target_update_interval=6, tau=1.0, batch_size=4
    )
    agent = DQNAgent(config, OBSERVATIONS, ACTIONS)
    rng = np.random.default_rng(0)

    def step(count):
        return agent.observe(
            rng.normal(size=(count, 4)),
            rng.integers(0, 2, count),
            rng.normal(size=count),
            rng.normal(size=(count, 4)),
            np.zeros(count),
            np.zeros(count, bool),
        )

    assert step(4) is None and step(3) is None  # 7 steps: before learning_starts
    assert step(1) is not None  # step 8: first call, 3 gradient steps
    assert int(agent.gradient_step_count.numpy()) == 3
    target_before = [weight.numpy() for weight in agent.target_network.weights]
    assert step(8) is not None  # steps 12 and 16: two calls' worth in one, 6 more gradient steps
    assert int(agent.gradient_step_count.numpy()) == 9
    # a hard copy happened at gradient step 6, and the online net moved on for 3 more steps after it
    assert any(
        not np.array_equal(old, new.numpy())
        for old, new in zip(target_before, agent.target_network.weights, strict=True)
    )
    assert any(
        not np.array_equal(t.numpy(), o.numpy())
        for t, o in zip(agent.target_network.weights, agent.q_network.weights, strict=True)
    )


def test_a_gradient_step_reduces_the_td_error_on_a_fixed_batch():
    agent = DQNAgent(
        DQNConfig(learning_rate=1e-2, target_update_interval=10_000, max_grad_norm=0.0), OBSERVATIONS, ACTIONS
    )
    rng = np.random.default_rng(1)
    batch = [
        rng.normal(size=(1, 32, 4)).astype(np.float32),
        rng.integers(0, 2, (1, 32)),
        rng.normal(size=(1, 32)).astype(np.float32),
        rng.normal(size=(1, 32, 4)).astype(np.float32),
        np.zeros((1, 32), np.float32),
        np.ones((1, 32), np.int32),
        np.ones((1, 32), np.float32),
    ]
    first_loss, _, _ = agent._train(*batch)
    for _ in range(20):
        loss, _, _ = agent._train(*batch)
    assert float(loss) < float(first_loss)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("learning_rate", -1e-3, "learning_rate=-0.001"),
        ("gamma", 1.5, "gamma=1.5"),
        ("batch_size", 0, "batch_size=0"),
        ("tau", 0.0, r"tau=0.0 is invalid: expected a number in \(0, 1\]"),
        ("optimizer", "sgd", "optimizer='sgd' is invalid: expected one of adam, rmsprop"),
        ("hidden_sizes", (64, 0), "hidden_sizes"),
        ("intra_op_threads", -1, r"intra_op_threads=-1 is invalid: expected a number >= 0"),
    ],
)
def test_config_validation_names_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        DQNConfig(**{field: value})


def test_config_overrides_convert_text_and_reject_unknown_fields():
    config = DQNConfig.from_preset("default", {"learning_rate": "1e-4", "hidden_sizes": "32,32", "batch_size": "128"})
    assert config.learning_rate == 1e-4 and config.hidden_sizes == (32, 32) and config.batch_size == 128
    with pytest.raises(ConfigError, match=r"unknown config field 'learnig_rate'.*did you mean learning_rate"):
        DQNConfig().replace(learnig_rate=1e-3)
    with pytest.raises(ConfigError, match="batch_size='many' is not a valid int"):
        DQNConfig().replace(batch_size="many")
    with pytest.raises(ConfigError, match=r"unknown preset 'fast'.*default, tutorial"):
        DQNConfig.from_preset("fast")


def test_tutorial_preset_keeps_the_original_hyperparameters():
    config = DQNConfig.from_preset("tutorial")
    assert (config.learning_rate, config.gamma, config.buffer_size, config.batch_size) == (0.01, 0.9, 2000, 32)
    assert config.hidden_sizes == (10,) and config.optimizer == "rmsprop" and config.target_update_interval == 100
    assert dataclasses.asdict(config) != dataclasses.asdict(DQNConfig())


def test_continuous_action_space_is_refused_with_a_clear_message():
    with pytest.raises(EnvError, match=r"dqn needs a Discrete action space, but Pendulum-v1 has Box"):
        DQNAgent(DQNConfig(), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)), "Pendulum-v1")


def test_qnetwork_config_round_trip():
    network = QNetwork(3, (16, 8), "tanh")
    clone = QNetwork.from_config(network.get_config())
    assert (clone.num_actions, clone.hidden_sizes, clone.activation) == (3, (16, 8), "tanh")
