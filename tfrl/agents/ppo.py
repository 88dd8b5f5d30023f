"""PPO (Schulman et al. 2017), as in the tutorials' Proximal Policy Optimization chapter, and as libraries run it.

An actor π(a|s) and a critic V(s) learn from rollouts of ``n_steps`` steps of every vector env. The
policy that collected a rollout, π_old, is kept fixed while the update takes ``epochs`` passes over
it in ``minibatches`` shuffled minibatches, all in one XLA-compiled ``tf.function`` call:

    A_t      = GAE(λ) of the rollout, from V(s_t) and V(s'_t)           (see ``generalized_advantages``)
    ρ_t      = π(a_t|s_t) / π_old(a_t|s_t)
    clip:      L_π = −mean( min(ρ_t·A_t, clip(ρ_t, 1 − ε, 1 + ε)·A_t) )  (eq. 7: no gain from moving ρ past 1 ± ε)
    kl:        L_π = −mean( ρ_t·A_t ) + β·mean( KL(π_old ‖ π) )          (eq. 8: β halves or doubles after each
                                                                         update to keep the KL near its target)
    actor:     L_π − c_H · mean( entropy π(·|s_t) )
    critic:    mean( (V(s_t) − (A_t + V_old(s_t)))² ), optionally clipped around V_old like the ratio

Advantages are normalised per minibatch; each network has its own optimizer, with gradient-norm
clipping and learning rates that can fall linearly to zero over ``anneal_steps`` env steps.
``terminated`` ends an episode's value; a time-limit truncation bootstraps from V of the real last
observation (the loop hands the agent that observation, not the next episode's first). Discrete
spaces get a categorical actor, Box spaces a Gaussian one with a learned, state-independent scale.
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
    distribution_from,
    flatten_time,
    generalized_advantages,
)
from tfrl.nets import ValueCritic

LOSSES = ("clip", "kl_penalty")


@dataclasses.dataclass(frozen=True)
class PPOConfig(AgentConfig, SeparateRates):
    """PPO hyperparameters (Stable-Baselines3 names where it has the same knob).

    An update learns from ``n_steps × num_envs`` transitions: ``epochs`` passes, each in
    ``minibatches`` shuffled minibatches (a remainder that does not fill a minibatch waits for the next
    pass). ``loss`` is ``clip`` (the clipped surrogate, ``clip_range`` ε) or ``kl_penalty`` (the
    adaptive KL penalty: ``kl_coef`` β to start, ``kl_target``; an update's remaining passes are skipped
    once the KL passes 4 × its target, as the tutorial does, critic steps included). ``clip_range_vf`` > 0 clips the critic's
    change too. ``learning_rate`` is both networks' rate (``actor_learning_rate`` or
    ``critic_learning_rate`` sets one apart); ``anneal_steps`` > 0 lowers the rates linearly to 0 at
    that env step. ``normalize_rewards`` divides each reward by the running standard deviation of the
    discounted return (``stochastic.RewardScaler``) before ``reward_scale`` multiplies it.

    The default is tuned on CartPole-v1 from rl-zoo3's settings (32 steps of each env, one
    full-batch minibatch, 20 epochs, separate actor and critic optimizers) with 4 envs instead of 8,
    γ 0.99 and λ 0.95 instead of 0.98 and 0.8, and a learning rate of 3e-3 instead of 1e-3: over seeds
    0–19 it solves CartPole-v1 in a median of 7,500 env steps (at most 15,000), rl-zoo3's settings in
    20,000 on seeds 0–4 (10,000–32,500). Each change alone halved that median; together they do more.
    """

    learning_rate: float = 3e-3
    actor_learning_rate: float | None = None
    critic_learning_rate: float | None = None
    gamma: float = 0.99
    gae_lambda: float = 0.95
    n_steps: int = 32
    epochs: int = 20
    minibatches: int = 1
    loss: str = "clip"
    clip_range: float = 0.2
    kl_target: float = 0.01
    kl_coef: float = 0.5
    clip_range_vf: float = 0.0
    normalize_advantage: bool = True
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    anneal_steps: int = 0
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
        # Tuned here on Pendulum-v1 (seeds 0–9 beat −200 in 10–20k env steps, median 10k, and end at
        # −130 … −162 after 100k; rl-zoo3's settings without their gSDE exploration took 50–70k): 8 envs
        # × 128 steps, 16 minibatches of 64, 20 epochs, γ 0.95, λ 0.95, learning rate 1e-3, rewards
        # scaled into about [−1.6, 0]. A wide start (σ 2 in action units; 0.5 never got there within
        # 50k, 1 took ~25k) matters most; learning rates fall to 0 at 60k steps, which stops the late
        # drops that runs with a constant rate show (with 0.9 instead of 0.95 for γ, seeds stalled).
        "pendulum": dict(
            n_steps=128,
            minibatches=16,
            epochs=20,
            gamma=0.95,
            gae_lambda=0.95,
            learning_rate=1e-3,
            reward_scale=0.1,
            initial_scale=2.0,
            anneal_steps=60_000,
        ),
        # rl-zoo3's tuned LunarLander PPO (16 envs × 1024 steps, minibatches of 64, 4 epochs, γ 0.999,
        # λ 0.98, entropy bonus 0.01, learning rate 3e-4: SB3's default) for its 1M env steps.
        "lunarlander": dict(
            n_steps=1024,
            minibatches=256,
            epochs=4,
            gamma=0.999,
            gae_lambda=0.98,
            ent_coef=0.01,
            learning_rate=3e-4,
        ),
        # The tutorial's simply_PPO.py: 100 ReLU units, actor Adam 1e-4 and critic 2e-4, γ 0.9, an update
        # every 32 steps (use num_envs=1 to be faithful) of 10 full-batch steps, clipped surrogate ε 0.2
        # (its alternative: --set loss=kl_penalty, kl_target 0.01, β 0.5), discounted returns bootstrapped
        # from V (λ = 1), no advantage normalisation, entropy bonus or gradient clipping; σ from its own
        # softplus head. Its (r + 8) / 8 rewards become r / 8: `terminated` already handles the episode end.
        "tutorial": dict(
            actor_learning_rate=1e-4,
            critic_learning_rate=2e-4,
            gamma=0.9,
            gae_lambda=1.0,
            n_steps=32,
            epochs=10,
            minibatches=1,
            loss="clip",
            clip_range=0.2,
            normalize_advantage=False,
            ent_coef=0.0,
            max_grad_norm=0.0,
            reward_scale=0.125,
            hidden_sizes=(100,),
            activation="relu",
            state_dependent_scale=True,
        ),
    }

    PRESET_RUN_DEFAULTS: ClassVar[dict[str, dict[str, int]]] = {
        "pendulum": {"num_envs": 8},
        "lunarlander": {"num_envs": 16, "total_steps": 1_000_000, "eval_every": 25_000, "checkpoint_every": 100_000},
    }
    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {
        "pendulum": ("Pendulum-v1",),
        "lunarlander": ("LunarLander-v3",),
    }

    def validate(self) -> None:
        self.require_positive(
            "n_steps",
            "epochs",
            "minibatches",
            "clip_range",
            "kl_target",
            "kl_coef",
            "reward_scale",
            "initial_scale",
            "min_scale",
        )
        self.require_non_negative("clip_range_vf", "ent_coef", "max_grad_norm", "anneal_steps")
        self.require_unit_interval("gamma", "gae_lambda")
        self.require_layer_sizes("hidden_sizes")
        self.require_choice("loss", LOSSES)
        self.require_choice("optimizer", ("adam", "rmsprop"))
        self._require("minibatches", self.minibatches <= self.n_steps, f"at most n_steps={self.n_steps}")
        self.require_above("initial_scale", "min_scale")


def clipped_surrogate_loss(log_ratio: tf.Tensor, advantages: tf.Tensor, clip_range: float) -> tf.Tensor:
    """``−mean(min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A))`` with ``ρ = exp(log_ratio)``: PPO's L^CLIP, negated to minimise."""
    ratio = tf.exp(log_ratio)
    clipped = tf.clip_by_value(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return -tf.reduce_mean(tf.minimum(ratio * advantages, clipped * advantages))


def value_loss(values: tf.Tensor, old_values: tf.Tensor, returns: tf.Tensor, clip_range: float) -> tf.Tensor:
    """``mean((V − R)²)``; with ``clip_range`` > 0 the larger of that and the loss of V kept within
    ``V_old ± clip_range`` (the pessimistic bound of OpenAI Baselines' PPO2)."""
    loss = tf.square(values - returns)
    if clip_range > 0:
        clipped = old_values + tf.clip_by_value(values - old_values, -clip_range, clip_range)
        loss = tf.maximum(loss, tf.square(clipped - returns))
    return tf.reduce_mean(loss)


class PPOAgent(RolloutLearning, AgentBase):
    """A stochastic actor and a value critic with their optimizers, learning from fixed-length rollouts."""

    algorithm = "ppo"
    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)
    config: PPOConfig
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 200_000,
        "num_envs": 4,
        "eval_every": 5_000,
        "checkpoint_every": 25_000,
    }

    def __init__(
        self,
        config: PPOConfig,
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
        self.kl_coef = tf.Variable(config.kl_coef, dtype=tf.float32, trainable=False, name="kl_coef")
        self.rollout = Rollout(config.n_steps)

        observations_spec = tf.TensorSpec([None, None, *self.observation_shape], tf.float32)
        flags_spec = tf.TensorSpec([None, None], tf.float32)
        self._update = tf.function(
            self._update_step,
            jit_compile=True,  # every rollout has the same shape, so XLA compiles the whole update once
            autograph=False,  # its loop is written as a tf.while_loop: converting it took ~0.5 s per run
            input_signature=[
                observations_spec,
                action_spec(self.action_space, [None, None]),
                flags_spec,
                observations_spec,
                flags_spec,
                flags_spec,
                tf.TensorSpec([], tf.float32),
            ],
        ).get_concrete_function()

    def learning_rate_fraction(self) -> float:
        """The share of the configured learning rates in force now: falls from 1 to 0 over ``anneal_steps``."""
        if self.config.anneal_steps == 0:
            return 1.0
        return max(0.0, 1.0 - self.env_steps / self.config.anneal_steps)

    def learn(self, batch: list[np.ndarray]) -> dict[str, float]:
        metrics = self._update(*batch, np.float32(self.learning_rate_fraction()))
        return {name: float(value) for name, value in metrics.items()}

    def _update_step(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
        truncated: tf.Tensor,
        learning_rate_fraction: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """``epochs`` passes of minibatch steps for actor and critic over one ``[T, num_envs]`` rollout."""
        config = self.config
        self.actor_optimizer.learning_rate.assign(config.actor_rate * learning_rate_fraction)
        self.critic_optimizer.learning_rate.assign(config.critic_rate * learning_rate_fraction)
        values = self.critic(flatten_time(observations))
        next_values = tf.reshape(self.critic(flatten_time(next_observations)), tf.shape(rewards))
        advantages = flatten_time(
            generalized_advantages(
                rewards * config.reward_scale,
                tf.reshape(values, tf.shape(rewards)),
                next_values,
                terminated,
                truncated,
                config.gamma,
                config.gae_lambda,
            )
        )
        returns = advantages + values
        observations, actions = flatten_time(observations), flatten_time(actions)
        old_outputs = self.actor(observations)  # π_old: the rollout was collected with these weights
        old_log_probs = distribution_from(self.actor, old_outputs).log_prob(actions)

        size = tf.shape(returns)[0] // config.minibatches
        shuffles = tf.argsort(self.generator.uniform([config.epochs, tf.shape(returns)[0]]), axis=-1)
        minibatches = tf.reshape(shuffles[:, : size * config.minibatches], [-1, size])

        def minibatch_step(index: tf.Tensor, stopped: tf.Tensor, last: tuple) -> tuple:
            """One actor step and one critic step on minibatch ``index``; ``last`` holds the previous
            step's metrics, of which a skipped critic step keeps the loss."""
            rows = minibatches[index]
            batch_advantages = tf.gather(advantages, rows)
            if config.normalize_advantage:
                batch_advantages = (batch_advantages - tf.reduce_mean(batch_advantages)) / (
                    tf.math.reduce_std(batch_advantages) + 1e-8
                )
            with tf.GradientTape() as tape:
                distribution = action_distribution(self.actor, tf.gather(observations, rows))
                log_ratio = distribution.log_prob(tf.gather(actions, rows)) - tf.gather(old_log_probs, rows)
                entropy = tf.reduce_mean(distribution.entropy())
                if config.loss == "clip":
                    policy_loss = clipped_surrogate_loss(log_ratio, batch_advantages, config.clip_range)
                else:
                    old_rows = [tf.gather(output, rows) for output in tf.nest.flatten(old_outputs)]
                    old = distribution_from(self.actor, tf.nest.pack_sequence_as(old_outputs, old_rows))
                    policy_loss = -tf.reduce_mean(tf.exp(log_ratio) * batch_advantages) + self.kl_coef * tf.reduce_mean(
                        old.kl_divergence(distribution)
                    )
                actor_loss = policy_loss - config.ent_coef * entropy
            # how far π has moved from π_old before this step: the k3 estimator of KL(π_old ‖ π)
            # (Schulman 2020), unbiased and never negative, and the share of ratios outside 1 ± ε
            approx_kl = tf.reduce_mean(tf.exp(log_ratio) - 1.0 - log_ratio)
            clip_fraction = tf.reduce_mean(tf.cast(tf.abs(tf.exp(log_ratio) - 1.0) > config.clip_range, tf.float32))
            actor_gradients = tape.gradient(actor_loss, self.actor.trainable_variables)

            def apply_steps() -> tf.Tensor:
                variables = self.actor.trainable_variables
                self.actor_optimizer.apply_gradients(zip(actor_gradients, variables, strict=True))
                with tf.GradientTape() as tape:
                    critic_loss = value_loss(
                        self.critic(tf.gather(observations, rows)),
                        tf.gather(values, rows),
                        tf.gather(returns, rows),
                        config.clip_range_vf,
                    )
                variables = self.critic.trainable_variables
                self.critic_optimizer.apply_gradients(
                    zip(tape.gradient(critic_loss, variables), variables, strict=True)
                )
                return critic_loss

            if config.loss == "kl_penalty":  # the tutorial's early stop: π has moved far enough for this rollout
                stopped = approx_kl > 4.0 * config.kl_target
                critic_loss = tf.cond(stopped, lambda: last[1], apply_steps)
            else:
                critic_loss = apply_steps()
            return index + 1, stopped, (actor_loss, critic_loss, entropy, approx_kl, clip_fraction)

        _, _, (actor_loss, critic_loss, entropy, approx_kl, clip_fraction) = tf.while_loop(
            lambda index, stopped, _: tf.logical_and(index < tf.shape(minibatches)[0], tf.logical_not(stopped)),
            minibatch_step,
            (tf.constant(0), tf.constant(False), (tf.constant(0.0),) * 5),
        )
        metrics = {
            "actor_loss": actor_loss,
            "critic_loss": critic_loss,
            "entropy": entropy,
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
            "mean_value": tf.reduce_mean(values),
        }
        if config.loss == "kl_penalty":
            kl = tf.reduce_mean(
                distribution_from(self.actor, old_outputs).kl_divergence(action_distribution(self.actor, observations))
            )
            factor = tf.where(kl < config.kl_target / 1.5, 0.5, tf.where(kl > config.kl_target * 1.5, 2.0, 1.0))
            self.kl_coef.assign(tf.clip_by_value(self.kl_coef * factor, 1e-4, 10.0))
            metrics.update(kl=kl, kl_coef=self.kl_coef.read_value())
        self.updates.assign_add(1)
        return metrics

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
            "kl_coef": self.kl_coef,
            "sampler": self.generator,
        }
