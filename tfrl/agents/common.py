"""Small pieces the off-policy agents share: when to train, and how to build an optimizer."""

from __future__ import annotations

import keras

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
