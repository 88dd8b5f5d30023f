"""The policy-gradient networks and their distributions, against closed forms."""

import math

import gymnasium as gym
import keras
import numpy as np
import pytest

from tfrl.agents.actor_critic import ActorCriticConfig
from tfrl.agents.ppo import PPOAgent, PPOConfig
from tfrl.agents.stochastic import HostActor, action_distribution, build_actor, clip_to_bounds
from tfrl.checkpoint import Checkpointer
from tfrl.envs import network_inputs
from tfrl.nets import CategoricalActor, GaussianActor, ValueCritic
from tfrl.training import BestPolicy

RNG = np.random.default_rng(0)
OBSERVATIONS = RNG.normal(size=(16, 3)).astype(np.float32)


def test_categorical_log_probs_and_entropy_match_the_softmax():
    actor = CategoricalActor(4, (8,))
    logits = actor(OBSERVATIONS).numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    actions = RNG.integers(0, 4, len(OBSERVATIONS))
    distribution = action_distribution(actor, OBSERVATIONS)
    np.testing.assert_allclose(distribution.log_prob(actions).numpy(), log_p[np.arange(16), actions], rtol=1e-5)
    np.testing.assert_allclose(distribution.entropy().numpy(), -(np.exp(log_p) * log_p).sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(distribution.mode().numpy(), logits.argmax(axis=1))


@pytest.mark.parametrize("state_dependent_scale", [False, True])
def test_gaussian_log_probs_and_entropy_match_the_normal_density(state_dependent_scale):
    actor = GaussianActor([-1.0, 0.0], [3.0, 2.0], (8,), state_dependent_scale=state_dependent_scale)
    mean, scale = (output.numpy().astype(np.float64) for output in actor(OBSERVATIONS))
    actions = RNG.normal(size=(16, 2))
    distribution = action_distribution(actor, OBSERVATIONS)
    # log N(x; μ, σ) summed over the action dimensions, and the entropy Σ ½ log(2πe σ²)
    expected_log_p = (-0.5 * ((actions - mean) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)).sum(axis=1)
    np.testing.assert_allclose(distribution.log_prob(actions.astype(np.float32)).numpy(), expected_log_p, rtol=1e-5)
    np.testing.assert_allclose(
        distribution.entropy().numpy(), (0.5 * math.log(2 * math.pi * math.e) + np.log(scale)).sum(axis=1), rtol=1e-5
    )
    np.testing.assert_allclose(distribution.mode().numpy(), mean, rtol=1e-6)


def test_gaussian_mean_stays_inside_asymmetric_bounds_and_scale_above_its_floor():
    actor = GaussianActor([-1.0, 0.0], [3.0, 2.0], (8,), initial_scale=0.5, min_scale=0.05)
    huge = 1e3 * OBSERVATIONS  # saturates the tanh
    mean, scale = (output.numpy() for output in actor(huge))
    assert (mean >= [-1.0, 0.0]).all() and (mean <= [3.0, 2.0]).all()
    assert np.abs(mean - [1.0, 1.0]).max() > 0.9  # it does reach out toward the bounds, around the centre
    np.testing.assert_allclose(scale, 0.5, rtol=1e-5)  # a state-independent scale starts at initial_scale
    actor.head.raw_scale.assign([-50.0, -50.0])
    assert (actor(OBSERVATIONS)[1].numpy() >= 0.05).all()
    # samples are clipped into the bounds for the env
    clipped = clip_to_bounds(actor, np.array([[-9.0, 9.0]], np.float32)).numpy()
    np.testing.assert_array_equal(clipped, [[-1.0, 2.0]])


HOST_ACTORS = {
    "categorical-tanh": lambda: CategoricalActor(3, (8, 8), "tanh"),
    "categorical-relu": lambda: CategoricalActor(3, (8,), "relu"),
    "gaussian": lambda: GaussianActor([-1.0, 0.0], [3.0, 2.0], (8,), initial_scale=0.7),
    "gaussian-state-dependent": lambda: GaussianActor([-2.0], [2.0], (8, 8), state_dependent_scale=True),
}


@pytest.mark.parametrize("make_actor", HOST_ACTORS.values(), ids=HOST_ACTORS.keys())
def test_host_actor_computes_what_the_keras_actor_does(make_actor):
    actor = make_actor()
    actor(OBSERVATIONS)
    for weights in actor.weights:  # move every weight off its initial value, the scale's too
        weights.assign(weights.numpy() + RNG.normal(scale=0.3, size=weights.shape))
    assert HostActor.supports(actor)
    host = HostActor(actor, seed=0)
    host.sample(OBSERVATIONS)
    for expected, computed in zip(
        keras.tree.flatten(actor(OBSERVATIONS)), keras.tree.flatten(host.outputs(OBSERVATIONS)), strict=True
    ):
        np.testing.assert_allclose(computed, expected.numpy(), rtol=1e-5, atol=1e-6)
    # the mode is the exported policy's action: the same argmax, the same mean clipped into the bounds
    observations = 3.0 * RNG.normal(size=(4096, 3)).astype(np.float32)
    expected = clip_to_bounds(actor, action_distribution(actor, observations).mode()).numpy()
    if isinstance(actor, CategoricalActor):
        np.testing.assert_array_equal(host.mode(observations), expected)
    else:
        np.testing.assert_allclose(host.mode(observations), expected, rtol=1e-5, atol=1e-6)


def test_host_actor_samples_follow_the_policy():
    actor = CategoricalActor(3, (8,))
    actor(OBSERVATIONS)
    actor.head.logits.bias.assign([1.0, 0.0, -1.0])
    host = HostActor(actor, seed=0)
    one = np.zeros((1, 3), np.float32)
    samples = np.concatenate([host.sample(np.repeat(one, 1000, axis=0)) for _ in range(20)])
    probabilities = np.exp(actor(one).numpy()[0]) / np.exp(actor(one).numpy()[0]).sum()
    np.testing.assert_allclose(np.bincount(samples, minlength=3) / len(samples), probabilities, atol=0.015)
    gaussian = GaussianActor([-5.0], [5.0], (8,), initial_scale=0.5)
    gaussian(OBSERVATIONS)
    draws = HostActor(gaussian, seed=1).sample(np.repeat(one, 20_000, axis=0))
    mean, scale = (output.numpy()[0] for output in gaussian(one))
    np.testing.assert_allclose([draws.mean(), draws.std()], [mean[0], scale[0]], atol=0.02)


def test_host_actor_acts_with_the_weights_of_every_update():
    agent = PPOAgent(
        PPOConfig(n_steps=2, hidden_sizes=(8,), actor_learning_rate=0.05),
        gym.spaces.Box(-1, 1, (3,)),
        gym.spaces.Discrete(3),
    )
    assert agent.host_actor is not None
    observations = RNG.normal(size=(4, 3)).astype(np.float32)
    for _ in range(3):  # an update after the second step
        actions = agent.act(observations, explore=True)
        agent.observe(observations, actions, np.ones(4), observations, np.zeros(4, bool), np.zeros(4, bool))
    assert int(agent.updates.numpy()) == 1
    agent.act(observations, explore=True)
    np.testing.assert_allclose(
        agent.host_actor.outputs(observations), agent.actor(observations).numpy(), rtol=1e-5, atol=1e-6
    )


def _small_ppo_agent(seed: int = 0) -> PPOAgent:
    return PPOAgent(PPOConfig(hidden_sizes=(8,)), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(3), seed=seed)


def _moved(agent: PPOAgent) -> None:
    for weights in agent.actor.weights:
        weights.assign(weights.numpy() + RNG.normal(scale=2.0, size=weights.shape))


def test_the_best_policy_put_in_for_an_export_is_the_one_that_acts():
    agent = _small_ppo_agent()
    observations = RNG.normal(size=(256, 3)).astype(np.float32)
    best = BestPolicy(agent)
    best.consider(0, np.ones(3), 0)
    best_actions = agent.actor(observations).numpy().argmax(axis=1)
    np.testing.assert_array_equal(agent.act(observations), best_actions)
    _moved(agent)
    agent.weights_replaced()
    current = agent.act(observations)
    assert not np.array_equal(current, best_actions)
    with best.applied():
        np.testing.assert_array_equal(agent.act(observations), best_actions)
    np.testing.assert_array_equal(agent.act(observations), current)


def test_a_restored_checkpoint_is_the_policy_that_acts(tmp_path):
    agent = _small_ppo_agent()
    observations = RNG.normal(size=(256, 3)).astype(np.float32)
    saved_actions = agent.act(observations)
    Checkpointer(tmp_path, agent).save(0)
    _moved(agent)
    agent.weights_replaced()
    assert not np.array_equal(agent.act(observations), saved_actions)
    Checkpointer(tmp_path, agent).restore()
    np.testing.assert_array_equal(agent.act(observations), saved_actions)


def test_a_restored_agent_samples_on_where_the_saved_one_stopped():
    def make_agent():
        return PPOAgent(PPOConfig(hidden_sizes=(8,)), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(3), seed=5)

    observations = RNG.normal(size=(64, 3)).astype(np.float32)
    saved = make_agent()
    first = saved.act(observations, explore=True)
    state = saved.numpy_state()
    second = saved.act(observations, explore=True)
    restored = make_agent()
    restored.actor.set_weights(saved.actor.get_weights())
    restored.load_numpy_state(state)
    np.testing.assert_array_equal(restored.act(observations, explore=True), second)
    assert not np.array_equal(first, second)


def test_actors_the_host_cannot_compute_act_through_tensorflow():
    assert not HostActor.supports(CategoricalActor(2, (8,), "elu"))
    assert not HostActor.supports(CategoricalActor(2, (8,), observation_space={"type": "Discrete", "n": 4}))
    assert not HostActor.supports(CategoricalActor(2, torso="minatar"))


def test_value_critic_outputs_one_value_per_observation():
    assert ValueCritic((8,))(OBSERVATIONS).shape == (16,)


def test_build_actor_picks_the_network_for_the_space():
    config, observation_space = ActorCriticConfig(hidden_sizes=(8,)), gym.spaces.Box(-1.0, 1.0, (3,))
    inputs = network_inputs(observation_space, config.torso)
    assert isinstance(build_actor(gym.spaces.Discrete(3), observation_space, config, inputs), CategoricalActor)
    gaussian = build_actor(gym.spaces.Box(-2.0, 2.0, (1,)), observation_space, config, inputs)
    assert isinstance(gaussian, GaussianActor) and gaussian.action_low == [-2.0] and gaussian.action_high == [2.0]


@pytest.mark.parametrize(
    "network",
    [
        CategoricalActor(3, (16, 8), "relu"),
        GaussianActor([-2.0], [2.0], (16,), "relu", state_dependent_scale=True, initial_scale=1.5, min_scale=0.1),
        GaussianActor([-2.0, -1.0], [2.0, 1.0], (16,)),
        ValueCritic((16, 8), "relu"),
    ],
    ids=["categorical", "gaussian-state-dependent", "gaussian-parameter", "critic"],
)
def test_networks_survive_a_keras_file_round_trip(network, tmp_path):
    network(OBSERVATIONS)
    network.save(tmp_path / "network.keras")
    clone = keras.models.load_model(tmp_path / "network.keras")
    assert clone.get_config() == network.get_config()
    for ours, theirs in zip(
        keras.tree.flatten(network(OBSERVATIONS)), keras.tree.flatten(clone(OBSERVATIONS)), strict=True
    ):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
