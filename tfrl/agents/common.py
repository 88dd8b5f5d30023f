"""Pieces the off-policy agents share: when to train, how to build an optimizer, exploration noise,
Q critics with their targets (DDPG, TD3, SAC), and acting and observing around a replay memory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfrl.nets import QCritic, soft_update
from tfrl.replay import ReplayBuffer

OPTIMIZERS = ("adam", "rmsprop", "rmsprop-centered")


def training_calls_due(steps_before: int, steps_after: int, learning_starts: int, train_freq: int) -> int:
    """How many training calls fall due as the env-step count moves from ``steps_before`` to ``steps_after``.

    A call is due at every multiple of ``train_freq`` reached at or after ``learning_starts``, so
    the ratio of gradient steps to env steps does not depend on how many vector envs add steps.
    """
    if steps_after < learning_starts:
        return 0
    return steps_after // train_freq - max(steps_before, learning_starts - 1) // train_freq


def make_optimizer(name: str, learning_rate: float, max_grad_norm: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam, RMSProp, or centred RMSProp; clipping the global gradient norm unless ``max_grad_norm`` is 0.

    ``rmsprop-centered`` is the optimizer of the Nature DQN and of MinAtar's DQN (Graves 2013):
    squared-gradient momentum 0.95 and ε = 0.01 added to the root, ``g / (sqrt(E[g²] − E[g]²) + 0.01)``
    in PyTorch's form. Keras adds ε under the root instead, so the same damping there is 0.01² = 1e-4.
    """
    clip = {"global_clipnorm": max_grad_norm} if max_grad_norm > 0 else {}
    if name == "rmsprop-centered":
        return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=0.95, epsilon=1e-4, centered=True, **clip)
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](learning_rate=learning_rate, **clip)


class FlatOptimizer:
    """A built Keras optimizer's update rule, run in NumPy on its variables laid end to end.

    For a caller whose cost per update is a TF call's fixed cost (~0.5 ms on a small machine)
    rather than arithmetic: the A3C driver, whose cost per update bounds how many workers it serves,
    steps Adam on a 9k-parameter network in ~50 µs this way (an XLA-compiled TF call: ~560 µs). The
    formulas and the float32 arithmetic are Keras' own (tested against it) for what
    ``make_optimizer`` builds: Adam, RMSprop plain or centred, global-norm clipping. Its state is
    one flat array per kind of slot variable (Adam's two moments, RMSprop's mean square and mean):
    ``read_slots`` reads them, and ``slot_variables`` are the Keras variables to write them back to.
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer) -> None:
        config = optimizer.get_config()
        unsupported = [
            key for key in ("clipnorm", "clipvalue", "weight_decay", "momentum", "amsgrad") if config.get(key)
        ] + (["use_ema"] if config.get("use_ema") else [])
        if unsupported or not isinstance(optimizer, (keras.optimizers.Adam, keras.optimizers.RMSprop)):
            raise ValueError(
                f"FlatOptimizer runs Adam and RMSprop without {', '.join(unsupported) or 'other options'}; "
                f"got {type(optimizer).__name__} with {config}"
            )
        self.adam = isinstance(optimizer, keras.optimizers.Adam)
        self.centered = bool(config.get("centered"))
        self.learning_rate = np.float32(optimizer.learning_rate.numpy())
        self.epsilon = np.float32(config["epsilon"])
        self.beta_1, self.beta_2 = np.float32(config.get("beta_1", 0.0)), np.float32(config.get("beta_2", 0.0))
        self.rho = config.get("rho", 0.0)
        self.clip_norm = np.float32(config.get("global_clipnorm") or 0.0)
        # Keras keeps one list of slot variables per kind, in the order of the variables it was built on.
        kinds = ["_momentums", "_velocities"] if self.adam else ["_velocities"] + ["_average_gradients"] * self.centered
        self.slot_variables: list[list[keras.Variable]] = [list(getattr(optimizer, kind)) for kind in kinds]

    def read_slots(self) -> list[np.ndarray]:
        """The optimizer's slot variables now, one flat array per kind."""
        return [np.concatenate([np.ravel(variable.numpy()) for variable in kind]) for kind in self.slot_variables]

    def step(
        self, weights: np.ndarray, slots: list[np.ndarray], gradients: np.ndarray, iteration: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """New ``(weights, slots)`` after one update with ``gradients`` (all flat float32; the inputs
        are left unchanged); ``iteration`` counts the updates before this one."""
        gradients = self._clipped(gradients)
        if self.adam:
            moment, square = slots
            step = np.float32(iteration + 1)
            alpha = (
                self.learning_rate * np.sqrt(np.float32(1) - self.beta_2**step) / (np.float32(1) - self.beta_1**step)
            )
            moment = moment + (gradients - moment) * (np.float32(1) - self.beta_1)
            square = square + (np.square(gradients) - square) * (np.float32(1) - self.beta_2)
            return weights - moment * alpha / (np.sqrt(square) + self.epsilon), [moment, square]
        square = self.rho * slots[0] + (1 - self.rho) * np.square(gradients)
        if self.centered:
            mean = self.rho * slots[1] + (1 - self.rho) * gradients
            new_slots, denominator = [square, mean], square - np.square(mean) + self.epsilon
        else:
            new_slots, denominator = [square], square + self.epsilon
        return weights - self.learning_rate * gradients / np.sqrt(denominator), new_slots

    def _clipped(self, gradients: np.ndarray) -> np.ndarray:
        """Scaled to norm ``clip_norm`` when above it; a non-finite norm makes every entry NaN, as in Keras."""
        if not self.clip_norm:
            return gradients
        norm = np.sqrt(np.dot(gradients, gradients))
        if not np.isfinite(norm):
            return np.full_like(gradients, np.nan)
        return gradients * np.minimum(np.float32(1), self.clip_norm / norm) if norm > 0 else gradients


class ExplorationNoise:
    """Gaussian or Ornstein-Uhlenbeck noise per vector env, in units of the action half-range.

    OU noise is temporally correlated (dx = −θ x + σ dW), which helps on envs that reward moving in
    one direction for a while; its state resets when an env's episode ends.
    """

    def __init__(
        self, kind: str, scale: float, decay: float, theta: float, action_dim: int, rng: np.random.Generator
    ) -> None:
        self.kind, self.scale, self.decay, self.theta = kind, scale, decay, theta
        self.action_dim = action_dim
        self.rng = rng
        self.state = np.zeros((0, action_dim))

    def sample(self, count: int) -> np.ndarray:
        if self.kind == "gaussian":
            return self.scale * self.rng.standard_normal((count, self.action_dim))
        if len(self.state) != count:
            self.state = np.zeros((count, self.action_dim))
        self.state += -self.theta * self.state + self.scale * self.rng.standard_normal(self.state.shape)
        return self.state.copy()

    def advance(self, steps: int, done: np.ndarray) -> None:
        """Decay the scale by ``steps`` env steps and reset the OU state of finished episodes."""
        self.scale *= self.decay**steps
        if len(self.state) == len(done):
            self.state[done] = 0.0


class QCritics:
    """``count`` critics Q(s, a) for continuous actions (one for DDPG, twins for TD3 and SAC), a target
    copy of each that follows it softly, and one optimizer for all of them.

    Each critic regresses onto the same targets, ``loss = Σ_i mean((Q_i(s, a) − y)²)``; an agent's
    target uses ``minimum(..., target=True)``, the smallest target critic's value, against overestimation (TD3, SAC).
    """

    def __init__(
        self,
        count: int,
        hidden_sizes: tuple[int, ...],
        activation: str,
        learning_rate: float,
        observation_shape: tuple[int, ...],
        action_size: int,
        inputs: Mapping[str, Any],
    ) -> None:
        def built() -> QCritic:
            critic = QCritic(hidden_sizes, activation, **inputs)
            critic([np.zeros((1, *observation_shape), np.float32), np.zeros((1, action_size), np.float32)])
            return critic

        self.online = [built() for _ in range(count)]
        self.targets = [built() for _ in range(count)]
        self.soft_update(tau=1.0)
        self.variables = [variable for critic in self.online for variable in critic.trainable_variables]
        self.optimizer = make_optimizer("adam", learning_rate)
        self.optimizer.build(self.variables)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="critic_steps")

    def minimum(self, observations: tf.Tensor, actions: tf.Tensor, target: bool = False) -> tf.Tensor:
        """``min_i Q_i(s, a)`` over the online critics, or over the target critics ``Q′_i`` when ``target``."""
        critics = self.targets if target else self.online
        return tf.reduce_min(tf.stack([critic([observations, actions]) for critic in critics]), axis=0)

    def train_step(
        self, observations: tf.Tensor, actions: tf.Tensor, targets: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """One gradient step of every critic toward ``targets``; returns the loss and the first critic's mean Q."""
        with tf.GradientTape() as tape:
            q_values = [critic([observations, actions]) for critic in self.online]
            loss = tf.add_n([tf.reduce_mean(tf.square(q - targets)) for q in q_values])
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.variables), self.variables, strict=True))
        self.steps.assign_add(1)
        return loss, tf.reduce_mean(q_values[0])

    def soft_update(self, tau: float) -> None:
        for target, online in zip(self.targets, self.online, strict=True):
            soft_update(target, online, tau)

    def networks(self) -> dict[str, keras.Model]:
        """``critic`` alone, or ``critic_1``, ``critic_2`` for twins (as the export's ``.keras`` files are named)."""
        if len(self.online) == 1:
            return {"critic": self.online[0]}
        return {f"critic_{index + 1}": critic for index, critic in enumerate(self.online)}

    def trackables(self) -> dict:
        return {
            **{f"critic_{index}": critic for index, critic in enumerate(self.online)},
            **{f"critic_target_{index}": target for index, target in enumerate(self.targets)},
            "critic_optimizer": self.optimizer,
            "critic_steps": self.steps,
        }


class ReplayLearning(ABC):
    """Acting and observing for the off-policy continuous-control agents (DDPG, TD3, SAC).

    Until ``learning_starts`` env steps the agent explores with uniformly random actions; after that
    ``_policy_actions`` decides. Every transition goes to the replay memory (rewards times
    ``reward_scale``; observations raw, merged into the observation statistics first), and each
    training call that falls due runs ``gradient_steps`` gradient steps
    inside one compiled ``_train`` call on batches drawn at once. The agent calls
    ``_init_replay_learning`` after ``AgentBase._setup`` and compiles ``_train`` with ``_train_signature``.
    """

    config: Any
    action_space: Any
    observation_shape: tuple[int, ...]
    _train: Callable[..., Any]
    track_observations: Callable[[np.ndarray], None]

    def _init_replay_learning(self, seed: int) -> None:
        """The action bounds, the numpy and graph RNGs (both from ``seed``), the env-step count and the memory."""
        self.low = self.action_space.low.astype(np.float32)
        self.high = self.action_space.high.astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.graph_rng = tf.random.Generator.from_seed(seed)
        self.env_steps = 0
        self.replay = ReplayBuffer(self.config.buffer_size, self.observation_shape, self.low.shape, np.float32)

    def _train_signature(self) -> list[tf.TensorSpec]:
        """``_train``'s inputs: K batches of observations, actions, rewards, next observations, terminated."""
        batches = tf.TensorSpec([None, None, *self.observation_shape], tf.float32)
        flags = tf.TensorSpec([None, None], tf.float32)
        return [batches, tf.TensorSpec([None, None, *self.low.shape], tf.float32), flags, batches, flags]

    @abstractmethod
    def _policy_actions(self, observations: np.ndarray, explore: bool) -> np.ndarray:
        """The agent's own actions once learning has started (noisy when ``explore``)."""

    def act(self, observations: np.ndarray, explore: bool = False) -> np.ndarray:
        """The policy's actions for a batch (random ones while warming up), always within the bounds."""
        observations = np.asarray(observations, np.float32)
        if explore and self.env_steps < self.config.learning_starts:
            return self.rng.uniform(self.low, self.high, (len(observations), *self.low.shape)).astype(np.float32)
        return np.clip(self._policy_actions(observations, explore), self.low, self.high).astype(np.float32)

    def _store_and_train(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
    ) -> Any:
        """Store one vector-env step; run the training calls due and return the last one's outputs, else None.

        A truncated episode is stored with ``terminated = 0``: its next observation still has a value.
        """
        config = self.config
        before = self.env_steps
        self.track_observations(observations)
        self.replay.add(observations, actions, np.asarray(rewards) * config.reward_scale, next_observations, terminated)
        self.env_steps += len(rewards)
        calls = training_calls_due(before, self.env_steps, config.learning_starts, config.train_freq)
        if calls == 0:
            return None
        batch = self.replay.sample(config.batch_size, calls * config.gradient_steps, self.rng)
        return self._train(
            batch["observations"], batch["actions"], batch["rewards"], batch["next_observations"], batch["terminated"]
        )

    def replay_state(self) -> dict:
        """Counters, the replay memory and the numpy RNG, for ``numpy_state``."""
        return {"env_steps": self.env_steps, "replay": self.replay.state(), "rng": self.rng.bit_generator.state}

    def load_replay_state(self, state: dict) -> None:
        self.env_steps = int(state["env_steps"])
        self.replay.load_state(state["replay"])
        self.rng.bit_generator.state = state["rng"]
