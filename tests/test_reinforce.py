import re

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.agents.reinforce import ReinforceAgent, ReinforceConfig
from tfrl.agents.stochastic import discounted_returns
from tfrl.errors import ConfigError, EnvError
from tfrl.logger import read_jsonl
from tfrl.training import restore_run

OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Discrete(2)
RANDOM_CARTPOLE_RETURN = 22.0


def test_discounted_returns_restart_at_each_episode_end():
    rewards = [1.0, 2.0, 3.0, 10.0, 20.0]
    ends = [0, 0, 1, 0, 1]  # two episodes laid end to end
    expected = [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 10 + 0.5 * 20, 20]
    np.testing.assert_allclose(discounted_returns(rewards, ends, 0.5).numpy(), expected)
    # per vector env (time-major [T, N]) works the same way
    np.testing.assert_allclose(
        discounted_returns(np.ones((3, 2)), np.zeros((3, 2)), 0.5).numpy(), [[1.75, 1.75], [1.5, 1.5], [1.0, 1.0]]
    )


def _episode(agent, observations, actions, rewards, truncate=False):
    """Feed one episode of a single env; returns the metrics of the update it triggered, if any."""
    metrics = None
    for t in range(len(rewards)):
        last = t == len(rewards) - 1
        metrics = agent.observe(
            observations[t : t + 1],
            actions[t : t + 1],
            np.array([rewards[t]], np.float32),
            observations[t : t + 1],
            np.array([last and not truncate]),
            np.array([last and truncate]),
        )
    return metrics


def test_update_matches_a_hand_computed_reinforce_gradient():
    """A linear softmax policy and plain SGD(1): the weight change is minus the hand-derived gradient."""
    gamma, epsilon = 0.9, 1e-8
    agent = ReinforceAgent(
        ReinforceConfig(hidden_sizes=(), gamma=gamma, episodes_per_update=1, epsilon=epsilon), OBSERVATIONS, ACTIONS
    )
    agent.optimizer = keras.optimizers.SGD(learning_rate=1.0)
    agent.optimizer.build(agent.actor.trainable_variables)
    agent._update = tf.function(agent._update_step)  # the same update, stepping with SGD
    kernel, bias = (weight.numpy().astype(np.float64) for weight in agent.actor.head.logits.weights)

    s = np.array([[0.1, -0.2, 0.3], [0.5, 0.4, -0.6], [-0.7, 0.8, 0.9]], np.float32)
    a = np.array([0, 1, 1])
    r = [1.0, 0.0, 2.0]
    assert _episode(agent, s, a, r) is not None

    returns = np.array([r[0] + gamma * r[1] + gamma**2 * r[2], r[1] + gamma * r[2], r[2]])
    v = (returns - returns.mean()) / (returns.std() + epsilon)
    logits = s.astype(np.float64) @ kernel + bias
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # loss = −(1/T) Σ v_t log p_t[a_t]  ⇒  ∂loss/∂logits_t = −(v_t / T)(onehot(a_t) − p_t)
    d_logits = -(v / 3.0)[:, None] * (np.eye(2)[a] - p)
    np.testing.assert_allclose(agent.actor.head.logits.kernel.numpy(), kernel - s.T @ d_logits, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(agent.actor.head.logits.bias.numpy(), bias - d_logits.sum(axis=0), rtol=1e-4, atol=1e-6)


def test_episodes_of_any_length_never_retrace(monkeypatch):
    traces = []
    original = ReinforceAgent._update_step
    monkeypatch.setattr(ReinforceAgent, "_update_step", lambda self, *args: traces.append(1) or original(self, *args))
    agent = ReinforceAgent(ReinforceConfig(episodes_per_update=1, baseline=True), OBSERVATIONS, ACTIONS)
    rng = np.random.default_rng(0)
    for length in (1, 3, 17, 2, 40):
        observations = rng.normal(size=(length, 3)).astype(np.float32)
        assert _episode(agent, observations, rng.integers(0, 2, length), rng.normal(size=length), truncate=length == 3)
    assert len(traces) == 1
    assert int(agent.updates.numpy()) == 5


def test_updates_wait_for_enough_complete_episodes_across_vector_envs():
    agent = ReinforceAgent(ReinforceConfig(episodes_per_update=3), OBSERVATIONS, ACTIONS)
    zeros = np.zeros((2, 3), np.float32)

    def step(done):
        return agent.observe(zeros, np.zeros(2, np.int64), np.ones(2), zeros, np.array(done), np.zeros(2, bool))

    assert step([False, False]) is None and step([True, False]) is None  # 1 episode done
    assert step([False, True]) is None  # 2 done
    metrics = step([True, False])  # 3 done: learn
    assert metrics is not None and int(agent.updates.numpy()) == 1
    assert agent.finished == [] and [len(episode["rewards"]) for episode in agent.episodes] == [0, 1]
    assert agent.env_steps == 8


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="episodes_per_update=0"):
        ReinforceConfig(episodes_per_update=0)
    with pytest.raises(
        ConfigError, match=re.escape("initial_scale=0.01 is invalid: expected a number above min_scale=0.1")
    ):
        ReinforceConfig(initial_scale=0.01, min_scale=0.1)
    tutorial = ReinforceConfig.from_preset("tutorial")
    assert (tutorial.learning_rate, tutorial.gamma, tutorial.hidden_sizes, tutorial.episodes_per_update) == (
        0.02,
        0.99,
        (10,),
        1,
    )


def test_unfit_spaces_are_refused():
    with pytest.raises(EnvError, match="reinforce needs a Discrete or Box action space"):
        ReinforceAgent(ReinforceConfig(), OBSERVATIONS, gym.spaces.MultiBinary(3), "Foo-v0")
    with pytest.raises(EnvError, match=r"its shape is \(2, 2\), but a non-empty vector of actions"):
        ReinforceAgent(ReinforceConfig(), OBSERVATIONS, gym.spaces.Box(-1.0, 1.0, (2, 2)), "Foo-v0")


def test_reinforce_learns_cartpole_in_a_short_run(tmp_path):
    result = tfrl.train(
        "reinforce",
        "CartPole-v1",
        seed=0,
        total_steps=20_000,
        eval_every=5_000,
        logdir=tmp_path / "runs",
        export_dir=tmp_path / "saved_models",
        progress=False,
    )
    evaluations = [row["mean"] for row in read_jsonl(result.run_dir / "evaluations.jsonl")]
    assert max(evaluations) >= 150 and result.final_return >= 5 * RANDOM_CARTPOLE_RETURN, evaluations
    # a policy without a critic exports action and sample_action, and no value endpoint
    policy = tfrl.load_policy(result.export_path)
    assert set(policy.endpoints) == {"action", "sample_action"}
    returns = tfrl.evaluate(policy, "CartPole-v1", episodes=5, seed=99)
    assert returns.mean() >= 0.5 * result.final_return


def test_a_run_resumes_from_its_checkpoint_with_the_same_networks_and_sampler(tmp_path):
    first = tfrl.train(
        "reinforce",
        "CartPole-v1",
        seed=3,
        total_steps=2_000,
        eval_every=1_000,
        eval_episodes=2,
        checkpoint_every=1_000,
        stop_at_threshold=False,
        logdir=tmp_path,
        export=False,
        progress=False,
    )
    _, restored, _ = restore_run(first.run_dir)
    assert restored.env_steps == first.env_steps == 2_000
    assert int(restored.updates.numpy()) == int(first.agent.updates.numpy()) > 0
    for ours, theirs in zip(
        restored.actor.weights + restored.optimizer.variables,
        first.agent.actor.weights + first.agent.optimizer.variables,
        strict=True,
    ):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(restored.generator.state.numpy(), first.agent.generator.state.numpy())
    resumed = tfrl.train(resume=first.run_dir, total_steps=3_000, export=False, progress=False)
    assert resumed.env_steps == 3_000
    assert [row["step"] for row in read_jsonl(first.run_dir / "evaluations.jsonl")] == [1_000, 2_000, 3_000]
