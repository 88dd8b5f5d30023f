"""Keras networks for every agent.

Each network is a ``keras.Model`` subclass registered under the ``tfrl`` package with a
``get_config``, so a saved ``.keras`` file loads in any Keras project that has tfrl installed.
Observations of any shape are flattened first, so the same classes serve vectors and grids.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops


def _dense_trunk(hidden_sizes: Sequence[int], activation: str, prefix: str) -> list[layers.Dense]:
    """The hidden layers every MLP here shares: one Dense layer per entry of ``hidden_sizes``."""
    return [
        layers.Dense(size, activation=activation, name=f"{prefix}_{index}")
        for index, size in enumerate(hidden_sizes)
    ]


def _flatten(observations):
    """Flatten everything but the batch axis, so image-like observations work unchanged."""
    return ops.reshape(observations, (ops.shape(observations)[0], -1))


@keras.saving.register_keras_serializable(package="tfrl")
class QNetwork(keras.Model):
    """Maps a batch of observations to one Q-value per discrete action.

    Args:
        num_actions: size of the discrete action space.
        hidden_sizes: units of each hidden layer of the MLP trunk.
        activation: any Keras activation name, used by every hidden layer.
    """

    def __init__(
        self,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_actions = int(num_actions)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.trunk = _dense_trunk(self.hidden_sizes, activation, "hidden")
        self.q_head = layers.Dense(self.num_actions, name="q_values")

    def call(self, observations):
        features = _flatten(observations)
        for layer in self.trunk:
            features = layer(features)
        return self.q_head(features)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_actions=self.num_actions,
            hidden_sizes=list(self.hidden_sizes),
            activation=self.activation,
        )
        return config


def soft_update(target: keras.Model, source: keras.Model, tau: float) -> None:
    """Move ``target``'s weights toward ``source``'s: ``t ← τ·s + (1 − τ)·t`` (τ = 1 copies)."""
    for target_weight, source_weight in zip(target.weights, source.weights):
        target_weight.assign(tau * source_weight + (1.0 - tau) * target_weight)
