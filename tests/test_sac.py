import json
import re

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.agents.sac import SACAgent, SACConfig, squashed_log_prob
from tfrl.checkpoint import Checkpointer
from tfrl.errors import ConfigError, EnvError
from tfrl.logger import read_jsonl

OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 3.0], np.float32))
RANDOM_PENDULUM_RETURN = -1200.0  # roughly the mean return of uniformly random torques


def _agent(**overrides):
    config = SACConfig(hidden_sizes=(16, 16), batch_size=8, learning_starts=0, train_freq=1, gradient_steps=1)
    return SACAgent(config.replace(**overrides), OBSERVATIONS, ACTIONS, seed=3)


def _batch(rng, k=1, b=8):
    return [
        rng.normal(size=(k, b, 3)).astype(np.float32),
        rng.uniform([0.0, -1.0], [1.0, 3.0], (k, b, 2)).astype(np.float32),
        rng.normal(size=(k, b)).astype(np.float32),
        rng.normal(size=(k, b, 3)).astype(np.float32),
        (rng.random((k, b)) < 0.5).astype(np.float32),
    ]


def _squashed_density(mean, std, actions):
    """π(a) from ``squashed_log_prob`` for 1-D actions ``a`` in (−1, 1), i.e. ``u = atanh(a)``."""
    column = np.ones((len(actions), 1), np.float32)
    pre_squash = np.arctanh(actions)[:, None].astype(np.float32)
    return np.exp(squashed_log_prob(np.float32(mean) * column, np.float32(np.log(std)) * column, pre_squash).numpy())


def test_squashed_log_prob_matches_a_sampled_density():
    """The tanh correction: exp(log π) of squashed samples matches their histogram, and integrates to 1."""
    samples = np.tanh(np.random.default_rng(0).normal(0.4, 0.9, 2_000_000))
    counts, edges = np.histogram(samples, bins=40, range=(-0.98, 0.98))
    sampled_density = counts / (len(samples) * np.diff(edges))
    within_bins = np.linspace(edges[:-1], edges[1:], 101, axis=1)  # the density averaged over each bin
    averaged = _squashed_density(0.4, 0.9, within_bins.ravel()).reshape(within_bins.shape).mean(axis=1)
    np.testing.assert_allclose(averaged, sampled_density, rtol=0.02)
    grid = np.linspace(-1, 1, 200_001)[1:-1]
    assert np.sum(_squashed_density(0.4, 0.9, grid)) * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-3)
    # the stable form stays finite where 1 − tanh²(u) underflows to 0 in float32
    assert np.isfinite(
        squashed_log_prob(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), np.full((1, 1), 12.0, np.float32))
    ).all()


def test_critic_target_by_hand():
    agent = _agent(gamma=0.9, ent_coef=0.3)
    _, _, rewards, next_observations, terminated = [array[0] for array in _batch(np.random.default_rng(1))]
    state = agent.graph_rng.state.numpy()
    targets = agent._critic_targets(rewards, next_observations, terminated).numpy()
    agent.graph_rng.reset(state)  # draw the same a′ again
    next_actions, log_probs = agent._sample_with_log_prob(next_observations)
    twins = np.stack([target([next_observations, next_actions]).numpy() for target in agent.critics.targets])
    assert not np.allclose(twins[0], twins[1])
    expected = rewards + 0.9 * (1 - terminated) * (twins.min(axis=0) - 0.3 * log_probs.numpy())
    np.testing.assert_allclose(targets, expected, rtol=1e-5, atol=1e-5)


def test_actions_are_squashed_into_the_bounds():
    agent = _agent()
    observations = np.random.default_rng(2).normal(size=(256, 3)).astype(np.float32) * 100  # saturate the tanh
    for explore in (False, True):
        actions = agent.act(observations, explore=explore)
        assert actions.shape == (256, 2) and (actions >= ACTIONS.low).all() and (actions <= ACTIONS.high).all()
    mean, _ = agent.actor(observations[:4])
    np.testing.assert_allclose(
        agent.act(observations[:4]),
        ACTIONS.low + (ACTIONS.high - ACTIONS.low) * (np.tanh(mean) + 1) / 2,
        rtol=1e-5,
        atol=1e-5,
    )


def test_temperature_rises_when_entropy_is_below_target_and_falls_above_it():
    agent = _agent(ent_coef=0.5)
    start = float(agent.log_alpha.numpy())
    agent._alpha_step(tf.fill([8], 10.0))  # log π far above −H̄ = 2: too little entropy
    assert float(agent.log_alpha.numpy()) > start
    agent = _agent(ent_coef=0.5)
    agent._alpha_step(tf.fill([8], -10.0))
    assert float(agent.log_alpha.numpy()) < start


def test_training_call_runs_k_steps_and_a_fixed_temperature_stays():
    agent = _agent(auto_ent_coef=False, ent_coef=0.2)
    assert b"_XlaMustCompile" in agent._train.function_def.SerializeToString()
    metrics = agent._train(*_batch(np.random.default_rng(3), k=4))
    assert int(agent.critics.optimizer.iterations.numpy()) == int(agent.actor_optimizer.iterations.numpy()) == 4
    assert int(agent.alpha_optimizer.iterations.numpy()) == 0
    assert float(metrics["alpha"]) == pytest.approx(0.2)


def test_correlated_exploration_noise_stays_standard_normal_and_resets_at_episode_ends():
    assert _agent().noise.theta == 1.0  # plain SAC: independent ε
    agent = _agent(exploration_theta=0.05)
    draws = np.array([agent.noise.sample(512) for _ in range(400)])[100:]  # [steps, envs, action dims]
    assert np.std(draws) == pytest.approx(1.0, abs=0.05)
    assert np.mean(draws[1:] * draws[:-1]) == pytest.approx(0.95, abs=0.05)  # lag-1 correlation 1 − θ
    agent.noise.advance(1, np.ones(512, bool))
    assert not agent.noise.state.any()


def test_truncated_transitions_bootstrap_and_terminated_ones_do_not():
    agent = _agent(learning_starts=100)
    observations = np.zeros((2, 3), np.float32)
    agent.observe(
        observations, np.ones((2, 2)), np.ones(2), observations, np.array([True, False]), np.array([False, True])
    )
    np.testing.assert_array_equal(agent.replay.terminated[:2], [1.0, 0.0])


def test_checkpoint_restores_replay_temperature_and_rngs(tmp_path):
    agent = _agent(batch_size=4, learning_starts=8)
    rng = np.random.default_rng(4)
    for _ in range(12):
        observations = rng.normal(size=(2, 3)).astype(np.float32)
        actions = agent.act(observations, explore=True)
        agent.observe(observations, actions, rng.normal(size=2), observations, np.zeros(2), np.zeros(2, bool))
    Checkpointer(tmp_path, agent).save(agent.env_steps)
    observations = rng.normal(size=(2, 3)).astype(np.float32)
    expected = agent.act(observations, explore=True)

    fresh = SACAgent(agent.config, OBSERVATIONS, ACTIONS, seed=9)
    assert Checkpointer(tmp_path, fresh).restore() == 24
    assert float(fresh.log_alpha.numpy()) == float(agent.log_alpha.numpy()) != 0.0
    np.testing.assert_array_equal(fresh.replay.rewards[:24], agent.replay.rewards[:24])
    np.testing.assert_array_equal(fresh.act(observations, explore=True), expected)


def test_config_validation_and_spaces():
    with pytest.raises(ConfigError, match=re.escape("ent_coef=0.0")):
        SACConfig(ent_coef=0.0)
    with pytest.raises(ConfigError, match="batch_size=512"):
        SACConfig(batch_size=512, buffer_size=100)
    assert SACConfig.from_preset("mountaincar").gamma == 0.9999
    with pytest.raises(EnvError, match=r"sac needs a Box action space.*use dqn or ppo"):
        SACAgent(SACConfig(), OBSERVATIONS, gym.spaces.Discrete(2))


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """The default reaches about −155 on Pendulum-v1 within 4k env steps (seed 0)."""
    root = tmp_path_factory.mktemp("sac")
    return tfrl.train(
        "sac",
        "Pendulum-v1",
        seed=0,
        total_steps=5_000,
        eval_every=2_500,
        eval_episodes=10,
        logdir=root / "runs",
        export_dir=root / "saved_models",
        progress=False,
    )


def test_sac_learns_pendulum_in_a_few_thousand_steps(pendulum_run):
    evaluations = [row["mean"] for row in read_jsonl(pendulum_run.run_dir / "evaluations.jsonl")]
    assert max(evaluations) >= -400 > RANDOM_PENDULUM_RETURN, evaluations


def test_export_round_trip_without_tfrl(pendulum_run, outputs_without_tfrl):
    path = pendulum_run.export_path
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert metadata["algorithm"] == "sac" and set(metadata["endpoints"]) == {"action", "sample_action", "value"}
    observations = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    outputs = outputs_without_tfrl(path, observations)
    agent = pendulum_run.agent
    with pendulum_run.best.applied():
        actions = agent.act(observations, explore=False)
        np.testing.assert_allclose(outputs["action"], actions, rtol=1e-5, atol=1e-6)
        twins = [critic([observations, actions]).numpy() for critic in agent.critics.online]
    np.testing.assert_allclose(outputs["value"], np.minimum(*twins), rtol=1e-4, atol=1e-4)
    samples = outputs["sample_action"]
    assert samples.shape == (32, 1) and (np.abs(samples) <= 2.0).all() and not np.allclose(samples, actions)
