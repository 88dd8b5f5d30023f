"""DDPG (Lillicrap et al. 2015) and TD3 (Fujimoto et al. 2018), as in the tutorials' DDPG chapter.

A deterministic actor μ(s) and a critic Q(s, a), each with a target copy that follows it softly
(``t ← τ·online + (1 − τ)·t``), learn from a replay memory:

    critic:  Q(s, a) → r + γ (1 − terminated) Q′(s′, μ′(s′))
    actor:   maximise Q(s, μ(s)); the gradient flows into the actor only

TD3 (``td3=True``, registry name ``td3``) adds three fixes for DDPG's overestimation: twin critics
with the minimum in the target, noise on the target action (policy smoothing), and an actor and
target update only every ``policy_delay`` critic steps.

Exploration adds Gaussian or Ornstein-Uhlenbeck noise to μ(s), scaled to the action range and
clipped to the bounds; it can decay per env step, as in the tutorial. Noise is off in evaluation
and in the exported policy. Pendulum's episodes end by truncation, so they bootstrap.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfrl.agents.base import AgentBase
from tfrl.agents.common import ExplorationNoise, QCritics, ReplayLearning, make_optimizer
from tfrl.agents.config import AgentConfig, SeparateRates
from tfrl.nets import DeterministicActor, QCritic, soft_update


@dataclasses.dataclass(frozen=True)
class DDPGConfig(AgentConfig, SeparateRates):
    """DDPG / TD3 hyperparameters (Stable-Baselines3 names where it has the same knob).

    Noise scales are fractions of the action half-range: 0.1 on Pendulum (torque ±2) is a standard
    deviation of 0.2. ``train_freq`` and ``learning_starts`` count env steps over all vector envs.
    ``learning_rate`` is the actor's and the critics' rate unless ``actor_learning_rate`` or
    ``critic_learning_rate`` sets one apart.
    The defaults (one gradient step per env step, 128-unit layers, batch 128) reach about −155 on
    Pendulum-v1 within 8k env steps; a 256-unit, batch-256 critic learns no better here and costs
    9× the time per step on two cores.
    """

    learning_rate: float = 1e-3
    actor_learning_rate: float | None = None
    critic_learning_rate: float | None = None
    gamma: float = 0.98
    tau: float = 0.005
    batch_size: int = 128
    buffer_size: int = 200_000
    learning_starts: int = 1_000
    train_freq: int = 64
    gradient_steps: int = 64
    hidden_sizes: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    noise_type: str = "gaussian"
    exploration_noise: float = 0.1
    noise_decay: float = 1.0
    ou_theta: float = 0.15
    reward_scale: float = 1.0
    td3: bool = False
    policy_delay: int = 2
    target_noise: float = 0.2
    target_noise_clip: float = 0.5

    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ("pi", "qf")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # DDPG_update.py: 30 hidden units, LR_A 0.001, LR_C 0.002, γ 0.9, τ 0.01, memory 10000,
        # batch 32, learning once the memory is full, one update per step, N(μ, 3) noise (1.5 ×
        # the half-range) decaying ×0.9995 per step, rewards /10.
        "tutorial": dict(
            actor_learning_rate=1e-3,
            critic_learning_rate=2e-3,
            gamma=0.9,
            tau=0.01,
            batch_size=32,
            buffer_size=10_000,
            learning_starts=10_000,
            train_freq=1,
            gradient_steps=1,
            hidden_sizes=(30,),
            noise_type="gaussian",
            exploration_noise=1.5,
            noise_decay=0.9995,
            reward_scale=0.1,
        ),
        # MountainCarContinuous-v0, whose reward for reaching the flag comes after a long swing that
        # independent noise never makes (the agent learns to stand still, return 0): rl-zoo3's TD3 and
        # DDPG entries explore with Ornstein-Uhlenbeck noise of σ 0.5 (a quarter of the range).
        "mountaincar": dict(noise_type="ou", exploration_noise=0.5),
    }
    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {"mountaincar": ("MountainCarContinuous-v0",)}

    def validate(self) -> None:
        self.require_positive(
            "batch_size",
            "buffer_size",
            "train_freq",
            "gradient_steps",
            "policy_delay",
            "reward_scale",
        )
        self.require_non_negative(
            "learning_starts", "exploration_noise", "target_noise", "target_noise_clip", "ou_theta"
        )
        self.require_unit_interval("gamma", "noise_decay")
        self._require("tau", 0.0 < self.tau <= 1.0, "a number in (0, 1]")
        self.require_layer_sizes("hidden_sizes")
        self.require_choice("noise_type", ("gaussian", "ou"))
        self.require_batch_fits()


class DeterministicPolicy(tf.Module):
    """The exported policy: ``action`` = μ(s) clipped to the bounds, ``value`` = Q(s, μ(s))."""

    def __init__(self, actor: DeterministicActor, critic: QCritic, observation_shape: tuple[int, ...]) -> None:
        super().__init__(name="deterministic_policy")
        self.actor, self.critic = actor, critic
        self.low = tf.constant(actor.action_low)
        self.high = tf.constant(actor.action_high)
        spec = [tf.TensorSpec([None, *observation_shape], tf.float32, name="observation")]
        self.action = tf.function(self._action, input_signature=spec)
        self.value = tf.function(self._value, input_signature=spec)

    def _action(self, observation: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(self.actor(observation), self.low, self.high)

    def _value(self, observation: tf.Tensor) -> tf.Tensor:
        return self.critic([observation, self._action(observation)])


class DDPGAgent(ReplayLearning, AgentBase):
    """Actor, critic(s), their targets and optimizers, the replay memory and the exploration noise."""

    action_spaces = (gym.spaces.Box,)
    space_hint = "use dqn for Discrete actions, or actor-critic which handles both"
    config: DDPGConfig
    action_space: gym.spaces.Box
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 20_000,
        "num_envs": 4,
        "eval_every": 2_000,
        "checkpoint_every": 5_000,
    }

    def __init__(
        self,
        config: DDPGConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
        seed: int = 0,
    ) -> None:
        self.algorithm = "td3" if config.td3 else "ddpg"
        self._setup(config, observation_space, action_space, env_id)
        self._init_replay_learning(seed)
        self.half_range = (self.high - self.low) / 2

        self.actor = self._build(
            DeterministicActor(self.low, self.high, config.layer_sizes("pi"), config.activation, **self.network_inputs)
        )
        self.actor_target = self._build(
            DeterministicActor(self.low, self.high, config.layer_sizes("pi"), config.activation, **self.network_inputs)
        )
        soft_update(self.actor_target, self.actor, tau=1.0)
        self.critics = QCritics(
            2 if config.td3 else 1,
            config.layer_sizes("qf"),
            config.activation,
            config.critic_rate,
            self.observation_shape,
            len(self.low),
            self.network_inputs,
        )
        self.actor_optimizer = make_optimizer("adam", config.actor_rate)
        self.actor_optimizer.build(self.actor.trainable_variables)
        self.noise = ExplorationNoise(
            config.noise_type, config.exploration_noise, config.noise_decay, config.ou_theta, len(self.low), self.rng
        )

        observation_spec = tf.TensorSpec([None, *self.observation_shape], tf.float32)
        self._mu = tf.function(self._actor_actions, input_signature=[observation_spec]).get_concrete_function()
        self._train = tf.function(
            self._train_steps,
            jit_compile=True,
            input_signature=self._train_signature(),
        ).get_concrete_function()

    def _build(self, actor: DeterministicActor) -> DeterministicActor:
        """Create the actor's weights by calling it once on a dummy batch."""
        actor(np.zeros((1, *self.observation_shape), np.float32))
        return actor

    def _actor_actions(self, observations: tf.Tensor) -> tf.Tensor:
        return self.actor(observations)

    def _policy_actions(self, observations: np.ndarray, explore: bool) -> np.ndarray:
        """μ(s) for a batch, plus exploration noise when ``explore`` (``act`` clips to the bounds)."""
        actions = self._mu(observations).numpy()
        if explore:
            actions = actions + self.half_range * self.noise.sample(len(actions))
        return actions

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
        critic_loss, actor_loss, mean_q = outputs
        return {"critic_loss": float(critic_loss), "actor_loss": float(actor_loss), "mean_q": float(mean_q)}

    def _train_steps(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One critic step per leading index of the batches, and the actor every ``policy_delay`` of them."""
        critic_loss, actor_loss, mean_q = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        for k in tf.range(tf.shape(rewards)[0]):
            critic_loss, mean_q = self._critic_step(
                observations[k], actions[k], rewards[k], next_observations[k], terminated[k]
            )
            if self.critics.steps % self.policy_delay == 0:
                actor_loss = self._actor_step(observations[k])
                soft_update(self.actor_target, self.actor, self.config.tau)
                self.critics.soft_update(self.config.tau)
        return critic_loss, actor_loss, mean_q

    @property
    def policy_delay(self) -> int:
        return self.config.policy_delay if self.config.td3 else 1

    def _critic_step(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self.critics.train_step(
            observations, actions, self._critic_targets(rewards, next_observations, terminated)
        )

    def _critic_targets(self, rewards: tf.Tensor, next_observations: tf.Tensor, terminated: tf.Tensor) -> tf.Tensor:
        """``r + γ (1 − terminated) Q′(s′, a′)``; TD3 smooths a′ and takes the smaller twin."""
        next_actions = self.actor_target(next_observations)
        if self.config.td3:
            noise = tf.clip_by_value(
                self.graph_rng.normal(tf.shape(next_actions)) * self.config.target_noise,
                -self.config.target_noise_clip,
                self.config.target_noise_clip,
            )
            next_actions = tf.clip_by_value(next_actions + noise * self.half_range, self.low, self.high)
        next_q = self.critics.minimum(next_observations, next_actions, target=True)
        return tf.stop_gradient(rewards + self.config.gamma * (1.0 - terminated) * next_q)

    def _actor_step(self, observations: tf.Tensor) -> tf.Tensor:
        """Gradient ascent on Q₁(s, μ(s)); only the actor's variables are updated."""
        variables = self.actor.trainable_variables
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self.critics.online[0]([observations, self.actor(observations)]))
        self.actor_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    # What training.py, checkpoint.py and export.py use.
    def policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.actor, self.critics.online[0], self.observation_shape)

    def networks(self) -> dict[str, keras.Model]:
        return {"actor": self.actor, **self.critics.networks()}

    def trackables(self) -> dict:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            **self.critics.trackables(),
            "actor_optimizer": self.actor_optimizer,
            "graph_rng": self.graph_rng,
        }

    def numpy_state(self) -> dict:
        return {
            **self.replay_state(),
            "noise_scale": self.noise.scale,
            "noise_state": self.noise.state,
        }

    def load_numpy_state(self, state: dict) -> None:
        self.load_replay_state(state)
        self.noise.scale = float(state["noise_scale"])
        self.noise.state = np.asarray(state["noise_state"])
