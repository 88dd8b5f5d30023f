"""The SavedModel contract, and ``load_policy`` for numpy-in/numpy-out use.

An export is a directory that ``tf.saved_model.load`` opens in a process that never imported tfrl:

- ``action(observation)``: batched float32 ``[None, *obs_shape]`` → the deterministic action; also the
  ``serving_default`` signature. ``sample_action``, ``q_values`` and ``value`` where the agent has them.
- ``assets/tfrl.json``: algorithm, env id, spaces, config, training steps, evaluation score.
- ``<network>.keras`` beside it: the trainable networks, for fine-tuning in Keras.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrl import __version__
from tfrl.errors import ExportError

METADATA_FILE = Path("assets") / "tfrl.json"
FORMAT = "tfrl-policy"
ENDPOINTS = ("action", "sample_action", "q_values", "value")


def _named_output(function: Any, name: str) -> Any:
    """A signature function that names its outputs, for TF Serving and ``saved_model_cli``.

    A recurrent policy's endpoints take ``(observation, state)`` and return ``(output, next state)``:
    their signatures have the inputs ``observation`` and ``state`` and the outputs ``name`` and ``state``.
    """
    spec = function.input_signature
    if len(spec) == 1:
        return tf.function(lambda observation: {name: function(observation)}, input_signature=spec)

    def stateful(observation: tf.Tensor, state: tf.Tensor) -> dict[str, tf.Tensor]:
        output, next_state = function(observation, state)
        return {name: output, "state": next_state}

    return tf.function(stateful, input_signature=spec)


class GridActionPolicy(tf.Module):
    """A discrete-action policy trained on a discretised Box env, exported to drive the real env.

    ``action`` and ``sample_action`` look the chosen index up in ``action_grid`` inside the graph and
    return the continuous action; ``q_values`` and ``value`` pass through unchanged (over the grid).
    """

    def __init__(self, policy: tf.Module, action_grid: np.ndarray) -> None:
        super().__init__(name="grid_action_policy")
        self.policy = policy
        self.action_grid = tf.constant(action_grid, tf.float32)
        for name in ("action", "sample_action"):
            if hasattr(policy, name):
                setattr(self, name, self._on_grid(getattr(policy, name)))
        for name in ("q_values", "value"):
            if hasattr(policy, name):
                setattr(self, name, getattr(policy, name))

    def _on_grid(self, choose_index: Any) -> Any:
        return tf.function(
            lambda observation: tf.gather(self.action_grid, choose_index(observation)),
            input_signature=choose_index.input_signature,
        )


def export_policy(
    agent: Any, path: str | os.PathLike, metadata: dict[str, Any], action_grid: np.ndarray | None = None
) -> Path:
    """Write ``agent.policy()`` and its networks to ``path``, replacing what was there only on success.

    With ``action_grid`` (rows = the real actions of a discretised env) the policy is wrapped in a
    ``GridActionPolicy``, so ``action`` returns real actions rather than indices.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = agent.policy() if action_grid is None else GridActionPolicy(agent.policy(), action_grid)
    # Keras 3 models are not children in TensorFlow's object graph: without this their weights are
    # saved only as captures of the functions, which TFLite cannot freeze (the converted model reads
    # NaN). ``weight.value`` is the tf.Variable the functions capture.
    module.network_weights = [weight.value for network in agent.networks().values() for weight in network.weights]
    endpoints = [name for name in ENDPOINTS if hasattr(module, name)]
    signatures = {name: _named_output(getattr(module, name), name).get_concrete_function() for name in endpoints}
    signatures["serving_default"] = signatures["action"]
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        for name, network in agent.networks().items():
            network.save(staging / f"{name}.keras")
        (staging / METADATA_FILE).parent.mkdir(exist_ok=True)
        full_metadata = {"format": FORMAT, "tfrl_version": __version__, "endpoints": endpoints, **metadata}
        if hasattr(module, "state_shape"):  # a recurrent policy: endpoints take and return a state
            full_metadata["state_shape"] = list(module.state_shape)
        (staging / METADATA_FILE).write_text(json.dumps(full_metadata, indent=2))
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``tfrl.json`` of an export, or an ``ExportError`` saying why ``path`` is not one."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"no such policy directory: {path}")
    if not (path / "saved_model.pb").exists():
        raise ExportError(f"{path} is not a SavedModel (no saved_model.pb); pass a directory written by tfrl export")
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise ExportError(
            f"{path} is a SavedModel but not a tfrl export: {METADATA_FILE} is missing or unreadable"
        ) from None
    if metadata.get("format") != FORMAT:
        raise ExportError(f"{path / METADATA_FILE} is not tfrl policy metadata (format {metadata.get('format')!r})")
    return metadata


class Policy:
    """A loaded export that takes and returns numpy: one observation or a batch of them.

    >>> policy = load_policy("saved_models/dqn-CartPole-v1")
    >>> policy(observation)           # one action for one observation
    >>> policy.q_values(batch)        # any endpoint the export has

    A recurrent export (``state_shape`` in its metadata) keeps one state row per observation row
    between calls, starting from zeros; call ``reset_state(batch_size)`` when new episodes begin.
    A stateless policy's ``reset_state`` does nothing.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.observation_shape = tuple(self.metadata["observation_space"]["shape"])
        self._module = tf.saved_model.load(str(self.path))
        self.endpoints = tuple(self.metadata["endpoints"])
        self.state_shape = tuple(self.metadata["state_shape"]) if "state_shape" in self.metadata else None
        self.state: np.ndarray | None = None

    def reset_state(self, batch_size: int) -> None:
        """Start every row of a recurrent policy's state afresh (zeros), for ``batch_size`` episodes."""
        if self.state_shape is not None:
            self.state = np.zeros((batch_size, *self.state_shape), np.float32)

    def __repr__(self) -> str:
        return f"Policy({self.metadata['algorithm']} on {self.metadata['env_id']}, from {self.path})"

    def __call__(self, observation: Any) -> np.ndarray:
        return self.action(observation)

    def __getattr__(self, name: str) -> Callable[[Any], np.ndarray]:
        if name in ENDPOINTS:
            if name not in self.__dict__.get("endpoints", ()):
                raise AttributeError(
                    f"this {self.metadata['algorithm']} policy has no {name!r} endpoint; it has {self.endpoints}"
                )
            return lambda observation: self._run(name, observation)
        raise AttributeError(name)

    def _run(self, endpoint: str, observation: Any) -> np.ndarray:
        observation = np.asarray(observation, dtype=np.float32)
        single = observation.shape == self.observation_shape
        if not single and observation.shape[1:] != self.observation_shape:
            raise ExportError(
                f"observation has shape {observation.shape}, but this policy ({self.metadata['algorithm']} on "
                f"{self.metadata['env_id']}) expects {self.observation_shape} or a batch (N, {', '.join(map(str, self.observation_shape))})"
            )
        batch = observation[None] if single else observation
        if self.state_shape is None:
            result = getattr(self._module, endpoint)(tf.constant(batch)).numpy()
        else:
            if self.state is None or len(self.state) != len(batch):
                self.reset_state(len(batch))
            result, next_state = getattr(self._module, endpoint)(tf.constant(batch), tf.constant(self.state))
            result, self.state = result.numpy(), next_state.numpy()
        return result[0] if single else result


def load_policy(path: str | os.PathLike) -> Policy:
    """Load a tfrl export for numpy use; raises ``ExportError`` for a path that is not one."""
    return Policy(path)
