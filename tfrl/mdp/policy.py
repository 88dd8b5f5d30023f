"""Ship a tabular policy as a SavedModel and measure it in a real environment.

``export_tabular_policy`` writes the package's SavedModel contract for a table of actions over a
Discrete observation space: ``action(observation)`` maps a batch of float32 state indices to int64
actions (also the ``serving_default`` signature), ``q_values`` is added when a Q table is given, and
``assets/tfrl.json`` carries the metadata. The directory loads with plain ``tf.saved_model.load``.

``run_episodes`` plays many seeded episodes in lock-step, one batched ``act`` call per time step, so
a SavedModel can be checked in the environment without paying one TF call per env step.
``wilson_interval`` gives the binomial confidence interval for a measured success rate.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrl.errors import ConfigError

METADATA_FILE = "tfrl.json"


class TabularPolicy(tf.Module):
    """A lookup-table policy over state indices, in the shape the SavedModel contract asks for."""

    def __init__(self, table: np.ndarray, q_values: np.ndarray | None, metadata_file: str) -> None:
        super().__init__(name="tabular_policy")
        self.table = tf.constant(table, tf.int64)
        self.q_table = None if q_values is None else tf.constant(q_values, tf.float32)
        self.metadata = tf.saved_model.Asset(metadata_file)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="observation")])
    def action(self, observation: tf.Tensor) -> tf.Tensor:
        """Greedy action for each state index in the batch."""
        return tf.gather(self.table, tf.cast(observation, tf.int64))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="observation")])
    def serve(self, observation: tf.Tensor) -> dict[str, tf.Tensor]:
        """``serving_default``: the same actions under the output name ``action``."""
        return {"action": self.action(observation)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="observation")])
    def q_values(self, observation: tf.Tensor) -> tf.Tensor:
        """Q[s, ·] for each state index in the batch."""
        return tf.gather(self.q_table, tf.cast(observation, tf.int64))


def export_tabular_policy(
    policy_table: np.ndarray,
    path: str | Path,
    metadata: Mapping[str, Any],
    q_values: np.ndarray | None = None,
) -> Path:
    """Write a SavedModel for a deterministic tabular policy and return its directory.

    ``policy_table[s]`` is the action for state index s (non-negative; drop terminal states, which
    have no action, before exporting). ``metadata`` (algorithm, env id, spaces, gamma, evaluation,
    ...) must be JSON-serialisable and is written to ``assets/tfrl.json``.
    """
    table = np.asarray(policy_table)
    if table.ndim != 1 or table.size == 0 or not np.issubdtype(table.dtype, np.integer):
        raise ConfigError(f"policy_table must be a non-empty 1-D integer array, got {table.dtype} {table.shape}")
    if (table < 0).any():
        raise ConfigError(
            f"policy_table[{int(np.argmin(table))}] = {table.min()}: every exported state needs an action >= 0; "
            "drop terminal states (action −1) before exporting"
        )
    if q_values is not None:
        q_values = np.asarray(q_values, dtype=np.float64)
        if q_values.ndim != 2 or q_values.shape[0] != table.size or table.max() >= q_values.shape[1]:
            raise ConfigError(
                f"q_values has shape {q_values.shape}; expected ({table.size}, actions) with actions > {table.max()}"
            )
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch:
        metadata_file = Path(scratch) / METADATA_FILE
        metadata_file.write_text(json.dumps(dict(metadata), indent=2, ensure_ascii=False))
        module = TabularPolicy(table, q_values, str(metadata_file))
        signatures = {"serving_default": module.serve, "action": module.action}
        if q_values is not None:
            signatures["q_values"] = module.q_values
        tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def run_episodes(
    make_env: Callable[[], Any],
    act: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int = 0,
) -> np.ndarray:
    """Undiscounted return of ``episodes`` episodes, episode i reset with ``seed + i``.

    All episodes run in lock-step on their own environment from ``make_env``; ``act`` receives the
    observations of the running episodes as one float32 batch and returns their actions.
    """
    envs = [make_env() for _ in range(episodes)]
    observations = np.array([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)], dtype=np.float32)
    returns = np.zeros(episodes)
    running = np.arange(episodes)
    while running.size:
        actions = np.asarray(act(observations[running]))
        still = []
        for i, action in zip(running, actions, strict=True):
            observation, reward, terminated, truncated, _ = envs[i].step(int(action))
            observations[i] = observation
            returns[i] += reward
            if not (terminated or truncated):
                still.append(i)
        running = np.array(still, dtype=np.int64)
    for env in envs:
        env.close()
    return returns


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (z = 1.96: 95 %)."""
    if trials < 1:
        raise ConfigError(f"trials={trials} must be >= 1")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half
