"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: algorithms and applications"), the default for continuous control.

SAC maximises reward plus the policy's entropy, weighted by a temperature α. A squashed Gaussian actor
samples ``a = squash(u)``, ``u ~ N(μ(s), σ(s))``; twin critics (the ones DDPG/TD3 use, each with a soft
target copy ``t ← τ·online + (1 − τ)·t``) learn from a replay memory:

    critics:  Q_i(s, a) → r + γ (1 − terminated) ( min_i Q′_i(s′, a′) − α log π(a′|s′) ),  a′ ~ π(·|s′)
    actor:    minimise mean( α log π(a|s) − min_i Q_i(s, a) ),  a ~ π(·|s) reparameterised (a = squash(μ + σε))
    α:        minimise mean( −log α · (log π(a|s) + H̄) ),  the target entropy H̄ = −dim(A) by default

``log π`` of a squashed sample needs the change of variables through tanh (appendix C of the paper):

    log π(a|s) = Σ_i [ log N(u_i; μ_i, σ_i) − log(1 − tanh²(u_i)) ]

measured in the tanh's [−1, 1] units, as Stable-Baselines3 does, so H̄ = −dim(A) means the same for any
action bounds. Training runs ``gradient_steps`` critic, actor and temperature steps per training call
in one XLA-compiled ``tf.function`` (the replay memory and the call cadence DDPG uses). Evaluation and
the exported ``action`` take the squashed mean; ``sample_action`` samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfrl.agents.base import AgentBase
from tfrl.agents.common import ExplorationNoise, QCritics, ReplayLearning, make_optimizer
from tfrl.agents.config import AgentConfig
from tfrl.nets import SquashedGaussianActor

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class SACConfig(AgentConfig):
    """SAC hyperparameters (Stable-Baselines3 names where it has the same knob).

    ``ent_coef`` is the temperature α: the starting value when ``auto_ent_coef`` learns it toward the
    target entropy ``target_entropy_per_dim × dim(A)``, otherwise fixed. ``train_freq`` and
    ``learning_starts`` count env steps over all vector envs; before ``learning_starts`` actions are
    uniformly random. ``exploration_theta`` < 1 makes the noise of the actions the agent explores with
    temporally correlated: an Ornstein-Uhlenbeck process ``x ← (1 − θ) x + √(2θ − θ²) ξ`` (still N(0, 1)
    at every step, reset at each episode's end) replaces independent ε in ``squash(μ + σε)``; θ = 1 is
    plain SAC. Learning is unchanged (SAC is off-policy). The defaults are rl-zoo3's Pendulum-v1 SAC (Stable-Baselines3's defaults with a
    learning rate of 1e-3), with 128-unit layers and batches of 128 instead of 256: on two cores that
    halves the time per gradient step, and Pendulum is learned as well.
    """

    learning_rate: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 128
    buffer_size: int = 200_000
    learning_starts: int = 100
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: float = 1.0
    auto_ent_coef: bool = True
    target_entropy_per_dim: float = -1.0
    exploration_theta: float = 1.0
    hidden_sizes: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    reward_scale: float = 1.0

    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ("pi", "qf")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # rl-zoo3's tuned MountainCarContinuous-v0 SAC: a fixed α of 0.1, γ 0.9999, τ 0.01, 64-unit
        # layers, batches of 512, 32 gradient steps every 32 env steps, learning rate 3e-4, memory 50000.
        # Its gSDE exploration (noise that changes only every few steps) becomes correlated noise here:
        # with independent noise the car never reaches the flag and SAC learns to stand still (return 0).
        "mountaincar": dict(
            learning_rate=3e-4,
            gamma=0.9999,
            tau=0.01,
            batch_size=512,
            buffer_size=50_000,
            learning_starts=0,
            train_freq=32,
            gradient_steps=32,
            ent_coef=0.1,
            auto_ent_coef=False,
            hidden_sizes=(64, 64),
            exploration_theta=0.02,
        ),
    }
    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {"mountaincar": ("MountainCarContinuous-v0",)}

    def validate(self) -> None:
        self.require_positive(
            "learning_rate", "batch_size", "buffer_size", "train_freq", "gradient_steps", "ent_coef", "reward_scale"
        )
        self.require_non_negative("learning_starts")
        self.require_unit_interval("gamma")
        self._require("tau", 0.0 < self.tau <= 1.0, "a number in (0, 1]")
        self._require("exploration_theta", 0.0 < self.exploration_theta <= 1.0, "a number in (0, 1]")
        self._require("target_entropy_per_dim", math.isfinite(self.target_entropy_per_dim), "a finite number")
        self.require_layer_sizes("hidden_sizes")
        self.require_batch_fits()


def squashed_log_prob(mean: tf.Tensor, log_std: tf.Tensor, pre_squash: tf.Tensor) -> tf.Tensor:
    """``log π(tanh u)`` for ``u ~ N(mean, exp(log_std))``, summed over the action dimensions.

    ``log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u))``: the same value, without the ``log 0`` that
    ``1 − tanh²`` reaches in float32 once ``|u|`` passes about 9.
    """
    gaussian = tfd.Normal(mean, tf.exp(log_std)).log_prob(pre_squash)
    log_det = 2.0 * (math.log(2.0) - pre_squash - tf.math.softplus(-2.0 * pre_squash))
    return tf.reduce_sum(gaussian - log_det, axis=-1)


class SACPolicy(tf.Module):
    """The exported policy: ``action`` = the squashed mean, ``sample_action`` a squashed sample (both
    inside the bounds), ``value`` = the smaller twin Q of ``action``."""

    def __init__(self, actor: SquashedGaussianActor, critics: QCritics, observation_shape: tuple[int, ...]) -> None:
        super().__init__(name="sac_policy")
        self.actor, self.critics = actor, critics.online
        self.generator = tf.random.Generator.from_seed(0)
        spec = [tf.TensorSpec([None, *observation_shape], tf.float32, name="observation")]
        self.action = tf.function(self._action, input_signature=spec)
        self.sample_action = tf.function(self._sample_action, input_signature=spec)
        self.value = tf.function(self._value, input_signature=spec)

    def _action(self, observation: tf.Tensor) -> tf.Tensor:
        return self.actor.squash(self.actor(observation)[0])

    def _sample_action(self, observation: tf.Tensor) -> tf.Tensor:
        mean, log_std = self.actor(observation)
        return self.actor.squash(mean + tf.exp(log_std) * self.generator.normal(tf.shape(mean)))

    def _value(self, observation: tf.Tensor) -> tf.Tensor:
        action = self._action(observation)
        return tf.reduce_min(tf.stack([critic([observation, action]) for critic in self.critics]), axis=0)


class SACAgent(ReplayLearning, AgentBase):
    """The squashed Gaussian actor, twin critics with their targets, the temperature and the replay memory."""

    algorithm = "sac"
    action_spaces = (gym.spaces.Box,)
    space_hint = "use dqn or ppo for Discrete actions"
    config: SACConfig
    action_space: gym.spaces.Box
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 20_000,
        "num_envs": 4,
        "eval_every": 2_000,
        "checkpoint_every": 5_000,
    }

    def __init__(
        self,
        config: SACConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
        seed: int = 0,
    ) -> None:
        self._setup(config, observation_space, action_space, env_id)
        self._init_replay_learning(seed)

        self.actor = SquashedGaussianActor(
            self.low, self.high, config.layer_sizes("pi"), config.activation, **self.network_inputs
        )
        self.actor(np.zeros((1, *self.observation_shape), np.float32))
        self.actor_optimizer = make_optimizer("adam", config.learning_rate)
        self.actor_optimizer.build(self.actor.trainable_variables)
        self.critics = QCritics(
            2,
            config.layer_sizes("qf"),
            config.activation,
            config.learning_rate,
            self.observation_shape,
            len(self.low),
            self.network_inputs,
        )
        self.log_alpha = tf.Variable(math.log(config.ent_coef), dtype=tf.float32, name="log_alpha")
        self.alpha_optimizer = make_optimizer("adam", config.learning_rate)
        self.alpha_optimizer.build([self.log_alpha])
        self.target_entropy = config.target_entropy_per_dim * len(self.low)
        theta = config.exploration_theta
        self.noise = ExplorationNoise("ou", math.sqrt(2 * theta - theta**2), 1.0, theta, len(self.low), self.rng)

        observation_spec = tf.TensorSpec([None, *self.observation_shape], tf.float32)
        self._sample = tf.function(
            self._sampled_actions, input_signature=[observation_spec, tf.TensorSpec([None, len(self.low)], tf.float32)]
        ).get_concrete_function()
        self._mean = tf.function(self._mean_actions, input_signature=[observation_spec]).get_concrete_function()
        self._train = tf.function(
            self._train_steps,
            jit_compile=True,
            input_signature=self._train_signature(),
        ).get_concrete_function()

    def _sampled_actions(self, observations: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        mean, log_std = self.actor(observations)
        return self.actor.squash(mean + tf.exp(log_std) * noise)

    def _mean_actions(self, observations: tf.Tensor) -> tf.Tensor:
        return self.actor.squash(self.actor(observations)[0])

    def _sample_with_log_prob(self, observations: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """A reparameterised squashed sample ``squash(μ + σε)`` (env units) and its log-probability."""
        mean, log_std = self.actor(observations)
        pre_squash = mean + tf.exp(log_std) * self.graph_rng.normal(tf.shape(mean))
        return self.actor.squash(pre_squash), squashed_log_prob(mean, log_std, pre_squash)

    def _policy_actions(self, observations: np.ndarray, explore: bool) -> np.ndarray:
        """A squashed sample (with the exploration noise) when ``explore``, else the squashed mean."""
        if explore:
            return self._sample(observations, self.noise.sample(len(observations)).astype(np.float32)).numpy()
        return self._mean(observations).numpy()

    def observe(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, float] | None:
        """Store one vector-env step and train if due; returns the training metrics when it trained."""
        outputs = self._store_and_train(observations, actions, rewards, next_observations, terminated)
        self.noise.advance(len(rewards), np.logical_or(terminated, truncated))
        if outputs is None:
            return None
        return {name: float(value) for name, value in outputs.items()}

    def _train_steps(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """One critic, actor and temperature step per leading index of the batches, then the soft target update."""
        critic_loss = actor_loss = mean_q = entropy = tf.constant(0.0)
        for k in tf.range(tf.shape(rewards)[0]):
            targets = self._critic_targets(rewards[k], next_observations[k], terminated[k])
            critic_loss, mean_q = self.critics.train_step(observations[k], actions[k], targets)
            actor_loss, log_probs = self._actor_step(observations[k])
            if self.config.auto_ent_coef:
                self._alpha_step(log_probs)
            self.critics.soft_update(self.config.tau)
            entropy = -tf.reduce_mean(log_probs)
        return {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "mean_q": mean_q,
            "entropy": entropy,
            "alpha": tf.exp(self.log_alpha),
        }

    def _critic_targets(self, rewards: tf.Tensor, next_observations: tf.Tensor, terminated: tf.Tensor) -> tf.Tensor:
        """``r + γ (1 − terminated) (min_i Q′_i(s′, a′) − α log π(a′|s′))`` with ``a′`` sampled from the actor."""
        next_actions, next_log_probs = self._sample_with_log_prob(next_observations)
        soft_value = (
            self.critics.minimum(next_observations, next_actions, target=True) - tf.exp(self.log_alpha) * next_log_probs
        )
        return tf.stop_gradient(rewards + self.config.gamma * (1.0 - terminated) * soft_value)

    def _actor_step(self, observations: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Minimise ``α log π(a|s) − min_i Q_i(s, a)`` through the reparameterised sample; only the actor moves."""
        variables = self.actor.trainable_variables
        with tf.GradientTape() as tape:
            actions, log_probs = self._sample_with_log_prob(observations)
            loss = tf.reduce_mean(tf.exp(self.log_alpha) * log_probs - self.critics.minimum(observations, actions))
        self.actor_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss, log_probs

    def _alpha_step(self, log_probs: tf.Tensor) -> None:
        """Raise α when the policy's entropy is below the target, lower it when above."""
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self.log_alpha * tf.stop_gradient(log_probs + self.target_entropy))
        self.alpha_optimizer.apply_gradients([(tape.gradient(loss, self.log_alpha), self.log_alpha)])

    # What training.py, checkpoint.py and export.py use.
    def policy(self) -> SACPolicy:
        return SACPolicy(self.actor, self.critics, self.observation_shape)

    def networks(self) -> dict[str, keras.Model]:
        return {"actor": self.actor, **self.critics.networks()}

    def trackables(self) -> dict:
        return {
            "actor": self.actor,
            **self.critics.trackables(),
            "actor_optimizer": self.actor_optimizer,
            "log_alpha": self.log_alpha,
            "alpha_optimizer": self.alpha_optimizer,
            "graph_rng": self.graph_rng,
        }

    def numpy_state(self) -> dict:
        return {**self.replay_state(), "noise_state": self.noise.state}

    def load_numpy_state(self, state: dict) -> None:
        self.load_replay_state(state)
        self.noise.state = np.asarray(state["noise_state"])
