"""The policy-gradient networks and their distributions, against closed forms."""

import math

import gymnasium as gym
import keras
import numpy as np
import pytest

from tfrl.agents.actor_critic import ActorCriticConfig
from tfrl.agents.stochastic import action_distribution, build_actor, clip_to_bounds
from tfrl.nets import CategoricalActor, GaussianActor, ValueCritic

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


def test_value_critic_outputs_one_value_per_observation():
    assert ValueCritic((8,))(OBSERVATIONS).shape == (16,)


def test_build_actor_picks_the_network_for_the_space():
    config, observation_space = ActorCriticConfig(hidden_sizes=(8,)), gym.spaces.Box(-1.0, 1.0, (3,))
    assert isinstance(build_actor(gym.spaces.Discrete(3), observation_space, config), CategoricalActor)
    gaussian = build_actor(gym.spaces.Box(-2.0, 2.0, (1,)), observation_space, config)
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
