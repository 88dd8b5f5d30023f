"""Checkpoints of a run: TensorFlow state through ``tf.train.CheckpointManager``, numpy state beside it.

The TF checkpoint holds networks, target networks, optimizer slots and graph-side counters. The
numpy state (replay memory, RNG state, Python counters) goes to ``state-<step>.npz``, written
*before* the TF checkpoint: the manager's index file is written last, so a run killed at any moment
resumes from a checkpoint whose two halves match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfrl.errors import CheckpointError

_JSON_KEY = "__json__"


def _flatten(state: dict, prefix: str = "") -> tuple[dict[str, np.ndarray], dict]:
    """Split a nested state into arrays (for npz) and everything else (for JSON)."""
    arrays, plain = {}, {}
    for key, value in state.items():
        path = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            arrays[path] = value
        elif isinstance(value, dict) and any(isinstance(item, (np.ndarray, dict)) for item in value.values()):
            sub_arrays, sub_plain = _flatten(value, f"{path}/")
            arrays.update(sub_arrays)
            plain.update(sub_plain)
        else:
            plain[path] = value
    return arrays, plain


def _unflatten(flat: dict) -> dict:
    state: dict = {}
    for path, value in flat.items():
        node = state
        *parents, leaf = path.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return state


def save_numpy_state(path: Path, state: dict) -> None:
    """Write ``state`` atomically: a partial file never has the final name."""
    arrays, plain = _flatten(state)
    arrays[_JSON_KEY] = np.asarray(json.dumps(plain))
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, allow_pickle=True, **arrays)
    os.replace(temporary, path)


def load_numpy_state(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        flat = {key: data[key] for key in data.files if key != _JSON_KEY}
        flat.update(json.loads(str(data[_JSON_KEY])))
    return _unflatten(flat)


def _trackable(item: Any) -> Any:
    """Keras 3 layers are not checkpoint children in TensorFlow's object graph: track their weights."""
    return list(item.weights) if isinstance(item, keras.layers.Layer) else item


class Checkpointer:
    """Saves and restores an agent's ``trackables()`` and ``numpy_state()`` in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], agent: Any, max_to_keep: int = 3) -> None:
        self.directory = Path(directory)
        self.agent = agent
        self.checkpoint = tf.train.Checkpoint(**{name: _trackable(item) for name, item in agent.trackables().items()})
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep)

    def save(self, step: int) -> str:
        """Checkpoint the agent at env step ``step``; keeps the newest ``max_to_keep``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        save_numpy_state(self._state_path(step), self.agent.numpy_state())
        path = self.manager.save(checkpoint_number=step)
        kept = {self._step_of(checkpoint) for checkpoint in self.manager.checkpoints}
        for state_file in self.directory.glob("state-*.npz"):
            if int(state_file.stem.split("-")[1]) not in kept:
                state_file.unlink()
        return path

    def restore(self) -> int:
        """Restore the newest checkpoint into the agent; returns its env step."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            raise CheckpointError(f"no checkpoint in {self.directory}: the run stopped before its first checkpoint")
        step = self._step_of(latest)
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as error:
            raise CheckpointError(
                f"checkpoint {latest} is corrupt or from a different configuration: {error}"
            ) from None
        state_path = self._state_path(step)
        try:
            self.agent.load_numpy_state(load_numpy_state(state_path))
        except (OSError, KeyError, ValueError) as error:
            raise CheckpointError(f"replay/RNG state {state_path} is missing or corrupt: {error}") from None
        return step

    def _state_path(self, step: int) -> Path:
        return self.directory / f"state-{step}.npz"

    @staticmethod
    def _step_of(checkpoint_path: str) -> int:
        return int(checkpoint_path.rsplit("-", 1)[1])
