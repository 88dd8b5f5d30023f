import json
import re

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.agents.actor_critic import ActorCriticAgent, ActorCriticConfig
from tfrl.agents.stochastic import n_step_returns
from tfrl.errors import ConfigError
from tfrl.logger import read_jsonl
from tfrl.training import RunSettings, export_run

RANDOM_CARTPOLE_RETURN = 22.0
PENDULUM_OBSERVATIONS = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_ACTIONS = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def test_n_step_returns_bootstrap_on_truncation_and_not_on_termination():
    gamma = 0.5
    rewards = np.ones((3, 3), np.float32)
    next_values = np.array([[10.0, 10.0, 10.0], [20.0, 20.0, 20.0], [30.0, 30.0, 30.0]], np.float32)
    # env 0: truncated at t=0, then a new episode runs past the rollout's end
    # env 1: terminated at t=1        env 2: nothing ends
    terminated = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    truncated = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32)
    expected = np.array(
        [
            [1 + 0.5 * 10, 1 + 0.5 * 1, 1 + 0.5 * (1 + 0.5 * (1 + 0.5 * 30))],
            [1 + 0.5 * (1 + 0.5 * 30), 1, 1 + 0.5 * (1 + 0.5 * 30)],
            [1 + 0.5 * 30, 1 + 0.5 * 30, 1 + 0.5 * 30],
        ]
    )
    np.testing.assert_allclose(n_step_returns(rewards, next_values, terminated, truncated, gamma).numpy(), expected)
    # one step: the TD target r + γ(1 − terminated)V(s'), truncated or not
    np.testing.assert_allclose(
        n_step_returns([[1.0, 1.0]], [[4.0, 4.0]], [[1.0, 0.0]], [[0.0, 1.0]], 0.5).numpy(), [[1.0, 3.0]]
    )


def _rollout(rng, steps, envs, continuous):
    actions = rng.uniform(-2, 2, (steps, envs, 1)) if continuous else rng.integers(0, 2, (steps, envs))
    return [
        rng.normal(size=(steps, envs, 3)).astype(np.float32),
        actions.astype(np.float32 if continuous else np.int64),
        rng.normal(size=(steps, envs)).astype(np.float32),
        rng.normal(size=(steps, envs, 3)).astype(np.float32),
        (rng.random((steps, envs)) < 0.2).astype(np.float32),
        np.zeros((steps, envs), np.float32),
    ]


def test_critic_loss_and_advantages_match_hand_values():
    """With a learning rate of ~0 the update leaves weights alone, so its losses can be checked by hand."""
    config = ActorCriticConfig(
        actor_learning_rate=1e-12,
        critic_learning_rate=1e-12,
        ent_coef=0.0,
        gamma=0.9,
        reward_scale=0.5,
        hidden_sizes=(8,),
    )
    agent = ActorCriticAgent(config, PENDULUM_OBSERVATIONS, gym.spaces.Discrete(2))
    observations, actions, rewards, next_observations, terminated, truncated = _rollout(
        np.random.default_rng(0), 4, 3, False
    )
    metrics = agent._update(observations, actions, rewards, next_observations, terminated, truncated)

    values = agent.critic(observations.reshape(-1, 3)).numpy().reshape(4, 3)
    next_values = agent.critic(next_observations.reshape(-1, 3)).numpy().reshape(4, 3)
    returns = np.zeros((4, 3))
    later = next_values[-1]
    for t in reversed(range(4)):  # the n-step recursion, written out
        later = 0.5 * rewards[t] + 0.9 * (1 - terminated[t]) * later
        returns[t] = later
    advantages = returns - values
    logits = agent.actor(observations.reshape(-1, 3)).numpy()
    log_p = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))[np.arange(12), actions.reshape(-1)]
    np.testing.assert_allclose(float(metrics["critic_loss"]), np.mean(advantages**2), rtol=1e-4)
    np.testing.assert_allclose(
        float(metrics["actor_loss"]), -np.mean(log_p * advantages.reshape(-1)), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_updates_improve_the_critic_on_a_fixed_rollout(continuous):
    action_space = PENDULUM_ACTIONS if continuous else gym.spaces.Discrete(2)
    agent = ActorCriticAgent(
        ActorCriticConfig(critic_learning_rate=1e-2, hidden_sizes=(16,)), PENDULUM_OBSERVATIONS, action_space
    )
    rollout = _rollout(np.random.default_rng(1), 8, 4, continuous)
    rollout[2] = rollout[0].sum(axis=-1)  # all-terminal steps: the critic regresses onto these rewards
    rollout[4] = np.ones_like(rollout[4])
    first = float(agent._update(*rollout)["critic_loss"])
    for _ in range(30):
        last = float(agent._update(*rollout)["critic_loss"])
    assert last < 0.5 * first
    assert int(agent.updates.numpy()) == 31


def test_observe_updates_every_n_steps_and_learns_from_unclipped_samples():
    agent = ActorCriticAgent(ActorCriticConfig(n_steps=3, hidden_sizes=(8,)), PENDULUM_OBSERVATIONS, PENDULUM_ACTIONS)
    observations = np.zeros((5, 3), np.float32)
    results = []
    for _ in range(7):
        actions = agent.act(observations, explore=True)
        assert actions.shape == (5, 1) and (np.abs(actions) <= 2.0).all()
        results.append(
            agent.observe(observations, actions, np.ones(5), observations, np.zeros(5, bool), np.zeros(5, bool))
        )
    assert [result is not None for result in results] == [False, False, True, False, False, True, False]
    assert agent.env_steps == 35 and int(agent.updates.numpy()) == 2
    # the rollout keeps the raw Gaussian sample (log-prob of what was drawn), the env got it clipped
    np.testing.assert_array_equal(agent.rollout.arrays["actions"][0], agent.raw_actions)
    deterministic = agent.act(observations, explore=False)
    np.testing.assert_allclose(deterministic, agent.actor(observations)[0].numpy(), rtol=1e-6)


def test_presets_and_validation():
    tutorial = ActorCriticConfig.from_preset("tutorial")
    assert (tutorial.actor_learning_rate, tutorial.critic_learning_rate, tutorial.gamma, tutorial.n_steps) == (
        1e-3,
        1e-2,
        0.9,
        1,
    )
    continuous = ActorCriticConfig.from_preset("tutorial-continuous")
    assert continuous.state_dependent_scale and continuous.min_scale == 0.1 and continuous.reward_scale == 0.1
    with pytest.raises(ConfigError, match="n_steps=0"):
        ActorCriticConfig(n_steps=0)
    with pytest.raises(ConfigError, match=re.escape("reward_scale=-1.0")):
        ActorCriticConfig(reward_scale=-1.0)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("actor_critic")
    return tfrl.train(
        "actor-critic",
        "CartPole-v1",
        seed=0,
        total_steps=20_000,
        eval_every=5_000,
        logdir=root / "runs",
        export_dir=root / "saved_models",
        progress=False,
    )


def test_actor_critic_learns_cartpole_in_a_short_run(cartpole_run):
    evaluations = [row["mean"] for row in read_jsonl(cartpole_run.run_dir / "evaluations.jsonl")]
    assert max(evaluations) >= 150 and cartpole_run.final_return >= 5 * RANDOM_CARTPOLE_RETURN, evaluations


def test_discrete_export_round_trip_without_tfrl(cartpole_run, outputs_without_tfrl):
    path = cartpole_run.export_path
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert set(metadata["endpoints"]) == {"action", "sample_action", "value"}
    assert (path / "actor.keras").exists() and (path / "critic.keras").exists()
    observations = np.random.default_rng(0).uniform(-0.5, 0.5, (32, 4)).astype(np.float32)
    outputs = outputs_without_tfrl(path, observations)
    agent = cartpole_run.agent
    with cartpole_run.best.applied():  # the export is the best-evaluated policy
        np.testing.assert_array_equal(outputs["action"], agent.act(observations, explore=False))
        expected_values = agent.critic(observations).numpy()
    assert set(np.unique(outputs["sample_action"])) <= {0, 1}
    np.testing.assert_allclose(outputs["value"], expected_values, rtol=1e-5, atol=1e-5)


def test_continuous_export_round_trip(tmp_path):
    agent = ActorCriticAgent(
        ActorCriticConfig(hidden_sizes=(8,), initial_scale=3.0), PENDULUM_OBSERVATIONS, PENDULUM_ACTIONS, "Pendulum-v1"
    )
    settings = RunSettings(algorithm="actor-critic", env_id="Pendulum-v1")
    path = export_run(agent, settings, tmp_path / "run", tmp_path / "export")
    policy = tfrl.load_policy(path)
    observations = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    action = policy.action(observations)
    assert action.shape == (64, 1) and action.dtype == np.float32
    # the agent's mode is NumPy's float32 arithmetic, the export's TensorFlow's: equal up to rounding
    np.testing.assert_allclose(action, agent.act(observations, explore=False), rtol=1e-5, atol=1e-6)
    samples = policy.sample_action(observations)
    assert (np.abs(samples) <= 2.0).all() and (np.abs(samples) == 2.0).any()  # a scale of 3 hits the bounds: clipped
    np.testing.assert_allclose(policy.value(observations[0]), agent.critic(observations[:1]).numpy()[0], rtol=1e-5)
    actor = keras.models.load_model(path / "actor.keras")
    np.testing.assert_allclose(actor(observations)[0].numpy(), agent.actor(observations)[0].numpy(), rtol=1e-6)
    # as a layer in another Keras model
    inputs = keras.Input((3,))
    outputs = keras.layers.TFSMLayer(str(path), call_endpoint="action")(inputs)
    np.testing.assert_allclose(keras.Model(inputs, outputs)(observations).numpy(), action, rtol=1e-6)


def test_update_compiles_under_xla_and_never_retraces():
    agent = ActorCriticAgent(ActorCriticConfig(hidden_sizes=(8,)), PENDULUM_OBSERVATIONS, PENDULUM_ACTIONS)
    assert isinstance(agent._update, tf.types.experimental.ConcreteFunction)
    assert b"_XlaMustCompile" in agent._update.function_def.SerializeToString()
    rng = np.random.default_rng(2)
    agent._update(*_rollout(rng, 8, 4, True))
    agent._update(*_rollout(rng, 1, 1, True))  # the tutorial's one-step shape goes through the same function
