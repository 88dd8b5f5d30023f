"""Actor-Critic, as in the tutorials' Actor-Critic chapter, and its stable form, advantage actor-critic.

An actor π(a|s) and a critic V(s) learn together. Every ``n_steps`` steps of all vector envs, one
XLA-compiled ``tf.function`` call updates both from the rollout just collected:

    G_t        = r_t + γ·r_{t+1} + … + γ^k·V(s_{t+k})   (n-step return; see ``stochastic.n_step_returns``)
    A_t        = G_t − V(s_t)                             (advantage: how much better than expected)
    actor loss = −mean( log π(a_t|s_t) · A_t ) − β · mean( entropy π(·|s_t) )
    critic     = mean( (G_t − V(s_t))² )

``terminated`` ends the return (a terminal state is worth nothing); a time-limit truncation
bootstraps from V of the real last observation.

The ``tutorial`` preset is the original one-step online actor-critic: ``n_steps = 1`` and, run with
``num_envs = 1``, one update per env step from the TD error ``r + γV(s') − V(s)``. Its updates are
strongly correlated, and the tutorial itself notes the policy oscillates. The default gathers 8-step
rollouts from 8 envs (64 decorrelated samples per update), adds an entropy bonus and clips the
gradient norm: that solves CartPole-v1 on seeds 0-4 in 15k-35k env steps. Discrete spaces get a
categorical actor, Box spaces a Gaussian one (``pendulum`` preset for Pendulum-v1).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfrl.agents.base import AgentBase
from tfrl.agents.common import make_optimizer
from tfrl.agents.config import AgentConfig, SeparateRates
from tfrl.agents.stochastic import (
    Rollout,
    RolloutLearning,
    StochasticPolicy,
    action_distribution,
    action_spec,
    build_actor,
    flatten_time,
    n_step_returns,
)
from tfrl.nets import ValueCritic


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(AgentConfig, SeparateRates):
    """Actor-critic hyperparameters.

    ``n_steps`` counts steps of each vector env per update, so an update learns from
    ``n_steps × num_envs`` transitions. ``reward_scale`` multiplies rewards only where the agent
    learns from them (logged returns stay in the env's units); ``normalize_rewards`` first divides each
    by the running standard deviation of the discounted return (``stochastic.RewardScaler``). ``initial_scale``, ``min_scale`` and
    ``state_dependent_scale`` only matter for Box action spaces. ``learning_rate`` is both networks'
    rate unless ``actor_learning_rate`` or ``critic_learning_rate`` sets one apart. The ``pendulum`` preset beats −200
    on Pendulum-v1 within 220k-390k env steps on seeds 0-4, though its return still oscillates.
    """

    learning_rate: float = 1e-3
    actor_learning_rate: float | None = None
    critic_learning_rate: float | None = None
    gamma: float = 0.99
    n_steps: int = 8
    ent_coef: float = 0.01
    normalize_advantage: bool = False
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0
    normalize_rewards: bool = False
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    optimizer: str = "adam"
    state_dependent_scale: bool = False
    initial_scale: float = 1.0
    min_scale: float = 1e-3

    # configs saved before ``normalize_rewards`` existed learned from the rewards as they were
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {**AgentConfig.ADDED_FIELDS, "normalize_rewards": False}
    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ("pi", "vf")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # Continuous control on Pendulum-v1: short horizon (γ 0.9, as every tutorial uses for it),
        # rewards scaled into about [−1.6, 0], normalised advantages, a learned state-independent scale
        # starting at 1 kept from collapsing by the entropy bonus (without it, seed 1 fell back to −515).
        "pendulum": dict(
            gamma=0.9,
            n_steps=8,
            ent_coef=0.01,
            reward_scale=0.1,
            actor_learning_rate=1e-3,
            critic_learning_rate=2e-3,
            normalize_advantage=True,
        ),
        # The original TF1 tutorial AC_CartPole.py: actor and critic with 20 ReLU units, Adam 0.001 and
        # 0.01, γ 0.9, one-step online updates (use num_envs=1 to be faithful), no entropy, no clipping.
        # Its r = −20 on failure is not copied: `terminated` already stops the bootstrap there.
        "tutorial": dict(
            actor_learning_rate=1e-3,
            critic_learning_rate=1e-2,
            gamma=0.9,
            n_steps=1,
            ent_coef=0.0,
            normalize_advantage=False,
            max_grad_norm=0.0,
            reward_scale=1.0,
            hidden_sizes=(20,),
            activation="relu",
            optimizer="adam",
        ),
        # AC_continue_Pendulum.py: 30 ReLU units; μ = 2·tanh, σ = softplus(·) + 0.1 from its own head
        # (bias 1, so σ starts at softplus(1) + 0.1); entropy bonus 0.01; rewards divided by 10.
        "tutorial-continuous": dict(
            actor_learning_rate=1e-3,
            critic_learning_rate=1e-2,
            gamma=0.9,
            n_steps=1,
            ent_coef=0.01,
            normalize_advantage=False,
            max_grad_norm=0.0,
            reward_scale=0.1,
            hidden_sizes=(30,),
            activation="relu",
            optimizer="adam",
            state_dependent_scale=True,
            initial_scale=1.4132617,
            min_scale=0.1,
        ),
    }
    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {"pendulum": ("Pendulum-v1",)}

    def validate(self) -> None:
        self.require_positive("n_steps", "reward_scale", "initial_scale", "min_scale")
        self.require_non_negative("ent_coef", "max_grad_norm")
        self.require_unit_interval("gamma")
        self.require_layer_sizes("hidden_sizes")
        self.require_above("initial_scale", "min_scale")
        self.require_choice("optimizer", ("adam", "rmsprop"))


class ActorCriticAgent(RolloutLearning, AgentBase):
    """A stochastic actor and a value critic, each with its own optimizer, learning from n-step rollouts."""

    algorithm = "actor-critic"
    config: ActorCriticConfig
    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 300_000,
        "num_envs": 8,
        "eval_every": 5_000,
        "checkpoint_every": 25_000,
    }

    def __init__(
        self,
        config: ActorCriticConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
        seed: int = 0,
    ) -> None:
        self._setup(config, observation_space, action_space, env_id)
        self.actor = build_actor(self.action_space, self.observation_space, config, self.network_inputs)
        self.critic = ValueCritic(config.layer_sizes("vf"), config.activation, **self.network_inputs)
        self.critic(np.zeros((1, *self.observation_shape), np.float32))
        self.actor_optimizer = make_optimizer(config.optimizer, config.actor_rate, config.max_grad_norm)
        self.actor_optimizer.build(self.actor.trainable_variables)
        self.critic_optimizer = make_optimizer(config.optimizer, config.critic_rate, config.max_grad_norm)
        self.critic_optimizer.build(self.critic.trainable_variables)
        self._init_acting(self.observation_shape, seed)
        self.env_steps = 0
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        self.rollout = Rollout(config.n_steps)

        observations_spec = tf.TensorSpec([None, None, *self.observation_shape], tf.float32)
        flags_spec = tf.TensorSpec([None, None], tf.float32)
        self._update = tf.function(
            self._update_step,
            jit_compile=True,  # the rollout's shape is fixed, so XLA compiles it once
            input_signature=[
                observations_spec,
                action_spec(self.action_space, [None, None]),
                flags_spec,
                observations_spec,
                flags_spec,
                flags_spec,
            ],
        ).get_concrete_function()

    def learn(self, batch: list[np.ndarray]) -> dict[str, float]:
        return {name: float(value) for name, value in self._update(*batch).items()}

    def _update_step(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
        truncated: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """One actor and one critic gradient step on a ``[T, num_envs]`` rollout."""
        config = self.config
        next_values = tf.reshape(self.critic(flatten_time(next_observations)), tf.shape(rewards))
        returns = flatten_time(
            n_step_returns(rewards * config.reward_scale, next_values, terminated, truncated, config.gamma)
        )
        with tf.GradientTape() as tape:
            values = self.critic(flatten_time(observations))
            critic_loss = tf.reduce_mean(tf.square(returns - values))
        variables = self.critic.trainable_variables
        self.critic_optimizer.apply_gradients(zip(tape.gradient(critic_loss, variables), variables, strict=True))

        advantages = tf.stop_gradient(returns - values)
        if config.normalize_advantage:
            advantages = (advantages - tf.reduce_mean(advantages)) / (tf.math.reduce_std(advantages) + 1e-8)
        with tf.GradientTape() as tape:
            distribution = action_distribution(self.actor, flatten_time(observations))
            entropy = tf.reduce_mean(distribution.entropy())
            actor_loss = (
                -tf.reduce_mean(distribution.log_prob(flatten_time(actions)) * advantages) - config.ent_coef * entropy
            )
        variables = self.actor.trainable_variables
        self.actor_optimizer.apply_gradients(zip(tape.gradient(actor_loss, variables), variables, strict=True))
        self.updates.assign_add(1)
        return {
            "actor_loss": actor_loss,
            "critic_loss": critic_loss,
            "entropy": entropy,
            "mean_value": tf.reduce_mean(values),
        }

    # What training.py, checkpoint.py and export.py use.
    def policy(self) -> StochasticPolicy:
        return StochasticPolicy(self.actor, self.observation_shape, self.critic)

    def networks(self) -> dict[str, keras.Model]:
        return {"actor": self.actor, "critic": self.critic}

    def trackables(self) -> dict:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "updates": self.updates,
            "sampler": self.generator,
        }
