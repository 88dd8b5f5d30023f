import re

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.agents.common import ExplorationNoise
from tfrl.agents.ddpg import DDPGAgent, DDPGConfig
from tfrl.checkpoint import Checkpointer
from tfrl.errors import ConfigError, EnvError

OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 3.0], np.float32))
RANDOM_PENDULUM_RETURN = -1200.0  # roughly the mean return of uniformly random torques


def _agent(**overrides):
    config = DDPGConfig(hidden_sizes=(16, 16), batch_size=8, learning_starts=0, train_freq=1, gradient_steps=1)
    return DDPGAgent(config.replace(**overrides), OBSERVATIONS, ACTIONS, seed=3)


def _batch(rng, k=1, b=8):
    return [
        rng.normal(size=(k, b, 3)).astype(np.float32),
        rng.uniform(-1, 1, (k, b, 2)).astype(np.float32),
        rng.normal(size=(k, b)).astype(np.float32),
        rng.normal(size=(k, b, 3)).astype(np.float32),
        (rng.random((k, b)) < 0.5).astype(np.float32),
    ]


def test_critic_target_by_hand():
    agent = _agent(gamma=0.9)
    rng = np.random.default_rng(0)
    _, _, rewards, next_observations, terminated = [array[0] for array in _batch(rng)]
    expected = (
        rewards
        + 0.9
        * (1 - terminated)
        * agent.critics.targets[0]([next_observations, agent.actor_target(next_observations)]).numpy()
    )
    np.testing.assert_allclose(
        agent._critic_targets(rewards, next_observations, terminated).numpy(), expected, rtol=1e-5, atol=1e-6
    )


def test_td3_target_takes_the_smaller_twin():
    agent = _agent(td3=True, gamma=0.5, target_noise=0.0)
    rng = np.random.default_rng(1)
    _, _, rewards, next_observations, terminated = [array[0] for array in _batch(rng)]
    next_actions = agent.actor_target(next_observations)
    twins = np.stack([critic([next_observations, next_actions]).numpy() for critic in agent.critics.targets])
    assert not np.allclose(twins[0], twins[1])
    expected = rewards + 0.5 * (1 - terminated) * twins.min(axis=0)
    np.testing.assert_allclose(
        agent._critic_targets(rewards, next_observations, terminated).numpy(), expected, rtol=1e-5, atol=1e-6
    )


def test_td3_target_smoothing_noise_is_clipped():
    agent = _agent(td3=True, target_noise=100.0, target_noise_clip=0.1)
    observations = np.random.default_rng(2).normal(size=(64, 3)).astype(np.float32)
    smoothed = []
    original = agent.critics.targets[0].call
    agent.critics.targets[0].call = lambda inputs: smoothed.append(inputs[1].numpy()) or original(inputs)
    agent._critic_targets(tf.zeros(64), observations, tf.zeros(64))
    agent.critics.targets[0].call = original
    offset = (
        smoothed[0] - np.clip(agent.actor_target(observations).numpy(), ACTIONS.low, ACTIONS.high)
    ) / agent.half_range
    assert np.abs(offset).max() <= 0.1 + 1e-6 and np.abs(offset).max() > 0.05


def test_actor_step_changes_only_the_actor():
    agent = _agent()
    critic_before = [weight.numpy() for weight in agent.critics.online[0].weights]
    actor_before = [weight.numpy() for weight in agent.actor.weights]
    agent._actor_step(tf.constant(np.random.default_rng(3).normal(size=(8, 3)), tf.float32))
    for before, weight in zip(critic_before, agent.critics.online[0].weights, strict=True):
        np.testing.assert_array_equal(before, weight.numpy())
    assert any(
        not np.array_equal(before, weight.numpy())
        for before, weight in zip(actor_before, agent.actor.weights, strict=True)
    )


def test_one_training_step_moves_targets_by_tau():
    agent = _agent(tau=0.1)
    targets_before = [weight.numpy() for weight in agent.actor_target.weights + agent.critics.targets[0].weights]
    agent._train(*_batch(np.random.default_rng(4)))
    online = agent.actor.weights + agent.critics.online[0].weights
    for before, target, source in zip(
        targets_before, agent.actor_target.weights + agent.critics.targets[0].weights, online, strict=True
    ):
        np.testing.assert_allclose(target.numpy(), 0.1 * source.numpy() + 0.9 * before, rtol=1e-5, atol=1e-7)


def test_td3_updates_the_actor_every_policy_delay_critic_steps():
    agent = _agent(td3=True, policy_delay=2)
    agent._train(*_batch(np.random.default_rng(5), k=4))
    assert int(agent.critics.optimizer.iterations.numpy()) == 4
    assert int(agent.actor_optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize("explore", [False, True])
def test_actions_stay_within_bounds_for_any_observation(explore):
    agent = _agent(exploration_noise=5.0)
    agent.env_steps = 10  # past learning_starts: the actor acts, with noise when exploring
    observations = np.random.default_rng(6).normal(scale=1e6, size=(256, 3))
    actions = agent.act(observations, explore=explore)
    assert actions.shape == (256, 2) and actions.dtype == np.float32
    assert (actions >= ACTIONS.low).all() and (actions <= ACTIONS.high).all()
    if explore:
        assert (actions == ACTIONS.low).any() and (actions == ACTIONS.high).any()


def test_actor_maps_tanh_onto_asymmetric_bounds():
    agent = _agent()
    squashed = np.tanh(agent.actor.head.action(agent.actor.features(np.ones((1, 3), np.float32))).numpy())
    np.testing.assert_allclose(
        agent.actor(np.ones((1, 3), np.float32)).numpy(), [[0.5, 1.0]] + squashed * [[0.5, 2.0]], rtol=1e-5
    )


def test_ou_noise_is_correlated_decays_and_resets_at_episode_ends():
    noise = ExplorationNoise("ou", scale=0.3, decay=0.5, theta=0.15, action_dim=1, rng=np.random.default_rng(7))
    samples = np.array([noise.sample(2)[:, 0] for _ in range(2000)])
    lag_one = np.corrcoef(samples[:-1, 0], samples[1:, 0])[0, 1]
    assert lag_one > 0.7  # θ = 0.15: successive values share 85% of their state
    noise.advance(2, np.array([True, False]))
    assert noise.scale == pytest.approx(0.3 * 0.25)
    assert noise.state[0, 0] == 0.0 and noise.state[1, 0] != 0.0
    gaussian = ExplorationNoise("gaussian", 0.3, 1.0, 0.15, 1, np.random.default_rng(8))
    draws = np.array([gaussian.sample(1)[0, 0] for _ in range(2000)])
    assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.1 and draws.std() == pytest.approx(0.3, rel=0.1)


def test_checkpoint_restores_noise_and_graph_rng(tmp_path):
    agent = _agent(td3=True, noise_type="ou", noise_decay=0.9)
    rng = np.random.default_rng(9)
    for _ in range(5):
        agent.act(rng.normal(size=(2, 3)), explore=True)
        agent.observe(
            rng.normal(size=(2, 3)),
            rng.uniform(-1, 1, (2, 2)),
            rng.normal(size=2),
            rng.normal(size=(2, 3)),
            np.zeros(2),
            np.zeros(2, bool),
        )
    Checkpointer(tmp_path, agent).save(agent.env_steps)
    expected = agent.graph_rng.normal([3]).numpy()
    restored = _agent(td3=True, noise_type="ou", noise_decay=0.9)
    Checkpointer(tmp_path, restored).restore()
    assert restored.noise.scale == pytest.approx(agent.noise.scale) and restored.env_steps == 10
    np.testing.assert_array_equal(restored.noise.state, agent.noise.state)
    np.testing.assert_array_equal(restored.graph_rng.normal([3]).numpy(), expected)


def test_bad_config_and_discrete_env_are_refused():
    with pytest.raises(ConfigError, match=re.escape("critic_learning_rate=-0.1")):
        DDPGConfig(critic_learning_rate=-0.1)
    with pytest.raises(ConfigError, match="noise_type='pink' is invalid: expected one of gaussian, ou"):
        DDPGConfig(noise_type="pink")
    with pytest.raises(EnvError, match=r"ddpg needs a Box action space, but CartPole-v1 has Discrete\(2\)"):
        DDPGAgent(DDPGConfig(), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), "CartPole-v1")
    with pytest.raises(EnvError, match=r"td3 needs a Box action space"):
        DDPGAgent(DDPGConfig(td3=True), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), "CartPole-v1")


@pytest.fixture(scope="module", params=["ddpg", "td3"])
def pendulum_run(request, tmp_path_factory):
    """A short run of each algorithm on Pendulum-v1 (~10 s each on 2 cores)."""
    root = tmp_path_factory.mktemp(request.param)
    return tfrl.train(
        request.param,
        "Pendulum-v1",
        seed=0,
        total_steps=6_000,
        eval_every=3_000,
        logdir=root / "runs",
        export_dir=root / "saved_models",
        progress=False,
    )


def test_each_agent_clearly_improves_pendulum(pendulum_run):
    assert pendulum_run.agent.config.td3 == (pendulum_run.agent.algorithm == "td3")
    assert pendulum_run.final_return > RANDOM_PENDULUM_RETURN / 3, (
        f"{pendulum_run.agent.algorithm}: mean evaluation return {pendulum_run.final_return:.0f} after 6k steps"
    )


def test_export_round_trip(pendulum_run):
    loaded = tf.saved_model.load(str(pendulum_run.export_path))
    observations = np.random.default_rng(10).uniform(-1, 1, (32, 3)).astype(np.float32)
    agent = pendulum_run.agent
    with pendulum_run.best.applied():  # the export is the best-evaluated policy
        expected_action = agent.act(observations)
        expected_value = agent.critics.online[0]([observations, expected_action]).numpy()
    np.testing.assert_allclose(loaded.action(observations).numpy(), expected_action, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.value(observations).numpy(), expected_value, rtol=1e-5, atol=1e-5)
    served = loaded.signatures["serving_default"](observation=tf.constant(observations))["action"].numpy()
    assert served.shape == (32, 1) and np.all(np.abs(served) <= 2.0)
    policy = tfrl.load_policy(pendulum_run.export_path)
    assert policy(observations[0]).shape == (1,)
    critic_files = {"ddpg": ["critic.keras"], "td3": ["critic_1.keras", "critic_2.keras"]}[agent.algorithm]
    for name in ["actor.keras", *critic_files]:
        assert (pendulum_run.export_path / name).exists()
