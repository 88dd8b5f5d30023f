"""Keras networks for every agent.

Each network is a ``keras.Model`` subclass registered under the ``tfrl`` package with a
``get_config``, so a saved ``.keras`` file loads in any Keras project that has tfrl installed.
Observations of any shape are flattened first, so the same classes serve vectors and grids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import keras
from keras import layers, ops

if TYPE_CHECKING:
    import tensorflow as tf


def _dense_trunk(hidden_sizes: Sequence[int], activation: str, prefix: str) -> list[layers.Dense]:
    """The hidden layers every MLP here shares: one Dense layer per entry of ``hidden_sizes``."""
    return [
        layers.Dense(size, activation=activation, name=f"{prefix}_{index}") for index, size in enumerate(hidden_sizes)
    ]


def _flatten(observations: tf.Tensor) -> tf.Tensor:
    """Flatten everything but the batch axis, so image-like observations work unchanged."""
    return ops.reshape(observations, (ops.shape(observations)[0], -1))


def dueling_aggregate(values: tf.Tensor, advantages: tf.Tensor) -> tf.Tensor:
    """``Q = V + A − mean_a A``: subtracting the mean makes V and A identifiable (Wang et al. 2016)."""
    return values + advantages - ops.mean(advantages, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="tfrl")
class QNetwork(keras.Model):
    """Maps a batch of observations to one Q-value per discrete action.

    With ``dueling`` the trunk feeds two heads, a state value V(s) and advantages A(s, a), combined
    by ``dueling_aggregate``; V learns from every transition, whatever action it took, which helps
    when many actions have nearly the same value (the 25 torques of the dueling tutorial).

    Args:
        num_actions: size of the discrete action space.
        hidden_sizes: units of each hidden layer of the MLP trunk.
        activation: any Keras activation name, used by every hidden layer.
        dueling: separate value and advantage heads instead of one Q head.
    """

    def __init__(
        self,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dueling: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_actions = int(num_actions)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.dueling = bool(dueling)
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        if self.dueling:
            self.value_head = layers.Dense(1, name="value")
            self.advantage_head = layers.Dense(self.num_actions, name="advantages")
        else:
            self.q_head = layers.Dense(self.num_actions, name="q_values")

    def call(self, observations: tf.Tensor) -> tf.Tensor:
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        if self.dueling:
            return dueling_aggregate(self.value_head(features), self.advantage_head(features))
        return self.q_head(features)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_actions=self.num_actions,
            hidden_sizes=list(self.hidden_sizes),
            activation=self.activation,
            dueling=self.dueling,
        )
        return config


def soft_update(target: keras.Model, source: keras.Model, tau: float) -> None:
    """Move ``target``'s weights toward ``source``'s: ``t ← τ·s + (1 − τ)·t`` (τ = 1 copies)."""
    for target_weight, source_weight in zip(target.weights, source.weights, strict=True):
        target_weight.assign(tau * source_weight + (1.0 - tau) * target_weight)


# Policy-gradient networks: a stochastic actor outputs the parameters of a distribution over actions
# (the agents build the tensorflow-probability distribution from them), a critic outputs V(s).


@keras.saving.register_keras_serializable(package="tfrl")
class CategoricalActor(keras.Model):
    """Maps a batch of observations to the logits of a categorical policy over discrete actions.

    Args:
        num_actions: size of the discrete action space.
        hidden_sizes: units of each hidden layer of the MLP trunk.
        activation: any Keras activation name, used by every hidden layer.
    """

    def __init__(
        self, num_actions: int, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_actions = int(num_actions)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.logits_head = layers.Dense(self.num_actions, name="logits")

    def call(self, observations: tf.Tensor) -> tf.Tensor:
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        return self.logits_head(features)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_actions=self.num_actions, hidden_sizes=list(self.hidden_sizes), activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="tfrl")
class GaussianActor(keras.Model):
    """Maps a batch of observations to the mean and scale of a diagonal Gaussian policy.

    The mean is ``tanh(·)`` scaled to the action bounds, ``centre + half_range · tanh(·)``, so the
    deterministic action always lies inside them. The scale is ``softplus(·) + min_scale``: positive,
    and never so small that log-probabilities explode. With ``state_dependent_scale`` (the tutorials'
    design) a second head computes it from the observation; otherwise it is one learned parameter per
    action dimension, which keeps exploration from collapsing on states the critic happens to like.

    Args:
        action_low, action_high: the bounds of the Box action space (one value per dimension).
        hidden_sizes: units of each hidden layer of the MLP trunk.
        activation: any Keras activation name, used by every hidden layer.
        state_dependent_scale: scale from a head on the trunk (True) or a free parameter (False).
        initial_scale: the scale before training (sets the bias of the scale head or the parameter).
        min_scale: the floor added after the softplus.
    """

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        state_dependent_scale: bool = False,
        initial_scale: float = 1.0,
        min_scale: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.action_low = [float(value) for value in action_low]
        self.action_high = [float(value) for value in action_high]
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.state_dependent_scale = bool(state_dependent_scale)
        self.initial_scale = float(initial_scale)
        self.min_scale = float(min_scale)
        if self.initial_scale <= self.min_scale:
            raise ValueError(f"initial_scale={initial_scale} must exceed min_scale={min_scale}")
        action_size = len(self.action_low)
        low, high = ops.convert_to_tensor(self.action_low), ops.convert_to_tensor(self.action_high)
        self._centre, self._half_range = (high + low) / 2.0, (high - low) / 2.0
        # softplus⁻¹(initial_scale − min_scale): the pre-activation that gives initial_scale.
        raw_initial = math.log(math.expm1(self.initial_scale - self.min_scale))
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.mean_head = layers.Dense(action_size, name="mean")
        if self.state_dependent_scale:
            self.scale_head = layers.Dense(
                action_size, bias_initializer=keras.initializers.Constant(raw_initial), name="scale"
            )
        else:
            self.raw_scale = self.add_weight(
                shape=(action_size,), initializer=keras.initializers.Constant(raw_initial), name="raw_scale"
            )

    def call(self, observations: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        mean = self._centre + self._half_range * ops.tanh(self.mean_head(features))
        raw_scale = (
            self.scale_head(features)
            if self.state_dependent_scale
            else ops.broadcast_to(self.raw_scale, ops.shape(mean))
        )
        return mean, ops.softplus(raw_scale) + self.min_scale

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            action_low=self.action_low,
            action_high=self.action_high,
            hidden_sizes=list(self.hidden_sizes),
            activation=self.activation,
            state_dependent_scale=self.state_dependent_scale,
            initial_scale=self.initial_scale,
            min_scale=self.min_scale,
        )
        return config


@keras.saving.register_keras_serializable(package="tfrl")
class SquashedGaussianActor(keras.Model):
    """Maps a batch of observations to the mean and log standard deviation of a diagonal Gaussian over
    pre-squash actions ``u`` (Soft Actor-Critic's actor, Haarnoja et al. 2018).

    An action is ``squash(u) = centre + half_range · tanh(u)``, inside the bounds by construction; the
    agent adds the change of variables to the log-probability. Both outputs come from heads on one
    trunk, and the log standard deviation is clipped into ``[log_std_min, log_std_max]`` so a sample
    neither freezes nor explodes.

    Args:
        action_low, action_high: the bounds of the Box action space (one value per dimension).
        hidden_sizes: units of each hidden layer of the MLP trunk.
        activation: any Keras activation name, used by every hidden layer.
        log_std_min, log_std_max: the range of the log standard deviation.
    """

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.action_low = [float(value) for value in action_low]
        self.action_high = [float(value) for value in action_high]
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        low, high = ops.convert_to_tensor(self.action_low), ops.convert_to_tensor(self.action_high)
        self._centre, self._half_range = (high + low) / 2.0, (high - low) / 2.0
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.mean_head = layers.Dense(len(self.action_low), name="mean")
        self.log_std_head = layers.Dense(len(self.action_low), name="log_std")

    def call(self, observations: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        log_std = ops.clip(self.log_std_head(features), self.log_std_min, self.log_std_max)
        return self.mean_head(features), log_std

    def squash(self, pre_squash: tf.Tensor) -> tf.Tensor:
        """``centre + half_range · tanh(u)``: a pre-squash action in the env's units, inside the bounds."""
        return self._centre + self._half_range * ops.tanh(pre_squash)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            action_low=self.action_low,
            action_high=self.action_high,
            hidden_sizes=list(self.hidden_sizes),
            activation=self.activation,
            log_std_min=self.log_std_min,
            log_std_max=self.log_std_max,
        )
        return config


@keras.saving.register_keras_serializable(package="tfrl")
class ValueCritic(keras.Model):
    """Maps a batch of observations to state values V(s), shape ``[batch]``.

    Args:
        hidden_sizes: units of each hidden layer of the MLP trunk.
        activation: any Keras activation name, used by every hidden layer.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.value_head = layers.Dense(1, name="value")

    def call(self, observations: tf.Tensor) -> tf.Tensor:
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        return ops.squeeze(self.value_head(features), axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(hidden_sizes=list(self.hidden_sizes), activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="tfrl")
class DeterministicActor(keras.Model):
    """μ(s): a deterministic continuous action inside the bounds, ``centre + half_range · tanh(·)``.

    Args:
        action_low, action_high: the Box action space's bounds (one entry per action dimension).
        hidden_sizes, activation: the MLP trunk.
    """

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.action_low = [float(value) for value in action_low]
        self.action_high = [float(value) for value in action_high]
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.action_head = layers.Dense(len(self.action_low), activation="tanh", name="action")
        self._centre = [(high + low) / 2 for low, high in zip(self.action_low, self.action_high, strict=True)]
        self._half_range = [(high - low) / 2 for low, high in zip(self.action_low, self.action_high, strict=True)]

    def call(self, observations: tf.Tensor) -> tf.Tensor:
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        return ops.convert_to_tensor(self._centre) + ops.convert_to_tensor(self._half_range) * self.action_head(
            features
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            action_low=self.action_low,
            action_high=self.action_high,
            hidden_sizes=list(self.hidden_sizes),
            activation=self.activation,
        )
        return config


@keras.saving.register_keras_serializable(package="tfrl")
class QCritic(keras.Model):
    """Q(s, a) for continuous actions: the observation and the action enter the MLP together.

    Called as ``critic([observations, actions])``, one Q-value per row.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (256, 256), activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.q_head = layers.Dense(1, name="q_value")

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        observations, actions = inputs
        features = ops.concatenate([_flatten(observations), _flatten(actions)], axis=-1)
        for layer in self.trunk:
            features = layer(features)
        return ops.squeeze(self.q_head(features), axis=-1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(hidden_sizes=list(self.hidden_sizes), activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="tfrl")
class RecurrentActorCritic(keras.Model):
    """A GRU cell whose state is carried from step to step, feeding an actor head and a critic head (A3C-RNN).

    Called as ``model([observations, state])`` with ``state`` of shape ``[batch, units]``; returns
    ``(policy, values, next_state)``. ``policy`` is the logits of a categorical policy when
    ``num_actions`` is given, else ``(mean, scale)`` of a diagonal Gaussian inside
    ``action_low``/``action_high`` (mean ``centre + half_range · tanh``, scale ``softplus + min_scale``
    from its own head, as in the tutorial). The cell belongs to the critic's side, as in the
    tutorial's A3C_RNN.py: ``critic_variables`` are the cell and value layers, ``actor_variables`` the rest.

    Args:
        units: size of the GRU state.
        num_actions: discrete action count, or None for a Box space.
        action_low, action_high: the Box bounds (one value per dimension), or None for a discrete space.
        actor_hidden_sizes, critic_hidden_sizes: Dense layers between the cell and each head.
        activation: any Keras activation name, used by every Dense hidden layer.
        initial_scale, min_scale: the Gaussian scale before training, and its floor.
    """

    def __init__(
        self,
        units: int = 64,
        num_actions: int | None = None,
        action_low: Iterable[float] | None = None,
        action_high: Iterable[float] | None = None,
        actor_hidden_sizes: Sequence[int] = (80,),
        critic_hidden_sizes: Sequence[int] = (50,),
        activation: str = "relu6",
        initial_scale: float = 1.0,
        min_scale: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (num_actions is None) == (action_low is None):
            raise ValueError("give num_actions for a discrete space or action_low/action_high for a Box, not both")
        self.units = int(units)
        self.num_actions = None if num_actions is None else int(num_actions)
        self.action_low = None if action_low is None else [float(value) for value in action_low]
        self.action_high = None if action_high is None else [float(value) for value in action_high]
        self.actor_hidden_sizes = tuple(int(size) for size in actor_hidden_sizes)
        self.critic_hidden_sizes = tuple(int(size) for size in critic_hidden_sizes)
        self.activation = activation
        self.initial_scale, self.min_scale = float(initial_scale), float(min_scale)
        self.cell = layers.GRUCell(self.units, name="gru")
        self.actor_trunk = _dense_trunk(self.actor_hidden_sizes, activation, "actor_hidden")
        self.critic_trunk = _dense_trunk(self.critic_hidden_sizes, activation, "critic_hidden")
        self.value_head = layers.Dense(1, name="value")
        if self.num_actions is not None:
            self.logits_head = layers.Dense(self.num_actions, name="logits")
        else:
            assert self.action_low is not None  # the check above: a Box space gives action_low
            low, high = ops.convert_to_tensor(self.action_low), ops.convert_to_tensor(self.action_high)
            self._centre, self._half_range = (high + low) / 2.0, (high - low) / 2.0
            raw_initial = math.log(math.expm1(self.initial_scale - self.min_scale))
            self.mean_head = layers.Dense(len(self.action_low), name="mean")
            self.scale_head = layers.Dense(
                len(self.action_low), bias_initializer=keras.initializers.Constant(raw_initial), name="scale"
            )

    def call(self, inputs: Sequence[tf.Tensor]) -> tuple[Any, tf.Tensor, tf.Tensor]:
        observations, state = inputs
        cell_output, next_state = self.cell(_flatten(observations), state)
        actor_features = critic_features = cell_output
        for layer in self.actor_trunk:
            actor_features = layer(actor_features)
        for layer in self.critic_trunk:
            critic_features = layer(critic_features)
        values = ops.squeeze(self.value_head(critic_features), axis=-1)
        if self.num_actions is not None:
            return self.logits_head(actor_features), values, next_state
        mean = self._centre + self._half_range * ops.tanh(self.mean_head(actor_features))
        scale = ops.softplus(self.scale_head(actor_features)) + self.min_scale
        return (mean, scale), values, next_state

    @property
    def critic_variables(self) -> list:
        layers_ = [self.cell, *self.critic_trunk, self.value_head]
        return [variable for layer in layers_ for variable in layer.trainable_variables]

    @property
    def actor_variables(self) -> list:
        critic = {id(variable) for variable in self.critic_variables}
        return [variable for variable in self.trainable_variables if id(variable) not in critic]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            units=self.units,
            num_actions=self.num_actions,
            action_low=self.action_low,
            action_high=self.action_high,
            actor_hidden_sizes=list(self.actor_hidden_sizes),
            critic_hidden_sizes=list(self.critic_hidden_sizes),
            activation=self.activation,
            initial_scale=self.initial_scale,
            min_scale=self.min_scale,
        )
        return config
