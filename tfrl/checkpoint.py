"""Checkpoints of a run: TensorFlow state in ``ckpt-<step>.*``, numpy state in ``state-<step>.npz``.

The TF checkpoint holds networks, target networks, optimizer slots and graph-side counters. The
numpy state (replay memory, RNG state, Python counters, the best policy's weights) goes to
``state-<step>.npz``. Both halves are written under a temporary name and renamed (TensorFlow writes
a checkpoint's ``.index`` last), numpy first, so a kill at any instant leaves every older checkpoint
intact and a newer one either complete or visibly incomplete.

``restore`` does not trust an index file: it lists the checkpoints on disk, newest first, and
restores the first complete one, reporting each one it skipped and why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfrl.errors import CheckpointError, StorageError, TrainingDiverged

_JSON_KEY = "__json__"
_TF_INDEX = re.compile(r"ckpt-(\d+)\.index")
_STATE_FILE = re.compile(r"state-(\d+)\.npz")


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
    """Write ``state`` atomically: a partial file never has the final name, and none is left behind
    when the write fails (a full disk: the ``OSError`` goes on to the caller)."""
    arrays, plain = _flatten(state)
    arrays[_JSON_KEY] = np.asarray(json.dumps(plain, allow_nan=False))
    temporary = path.with_suffix(".tmp.npz")
    try:
        np.savez(temporary, allow_pickle=True, **arrays)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def load_numpy_state(path: Path) -> dict:
    """The state ``save_numpy_state`` wrote; ``CheckpointError`` naming the file if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {key: data[key] for key in data.files if key != _JSON_KEY}
            flat.update(json.loads(str(data[_JSON_KEY])))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(error).__name__}: {error})") from None
    return _unflatten(flat)


def networks_finite(agent: Any) -> bool:
    """Whether every weight of the agent's networks is a finite number."""
    return all(np.isfinite(weights).all() for network in agent.networks().values() for weights in network.get_weights())


def require_finite_weights(agent: Any, step: int) -> None:
    """Raise ``TrainingDiverged`` if a network weight is NaN or infinite: such weights are never kept."""
    if not networks_finite(agent):
        raise TrainingDiverged(f"training diverged at env step {step}: the network weights hold NaN or infinite values")


def _trackable(item: Any) -> Any:
    """Keras 3 layers are not checkpoint children in TensorFlow's object graph: track their weights."""
    return list(item.weights) if isinstance(item, keras.layers.Layer) else item


class Checkpointer:
    """Saves and restores an agent's ``trackables()`` and ``numpy_state()`` in ``directory``.

    ``extra_state`` (returning a dict of numpy arrays and JSON values) lets the training loop keep its
    own state, the best policy, in the same file; a restore leaves it in ``restored_extra_state``.
    A checkpoint never holds NaN or infinite weights: ``save`` raises ``TrainingDiverged`` instead.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        agent: Any,
        max_to_keep: int = 3,
        extra_state: Callable[[], dict[str, Any]] | None = None,
    ):
        self.directory = Path(directory)
        self.agent = agent
        self.max_to_keep = max_to_keep
        self.checkpoint = tf.train.Checkpoint(**{name: _trackable(item) for name, item in agent.trackables().items()})
        self.extra_state = extra_state or dict
        self.restored_extra_state: dict[str, Any] = {}
        self.skipped: list[str] = []  # what the last restore passed over, one line each

    def save(self, step: int) -> Path:
        """Checkpoint the agent at env step ``step``; keeps the newest ``max_to_keep``."""
        require_finite_weights(self.agent, step)
        state_path, prefix = self._state_path(step), self.directory / f"ckpt-{step}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save_numpy_state(state_path, {**self.agent.numpy_state(), "_extra": self.extra_state()})
            self.checkpoint.write(str(prefix))
        except (OSError, tf.errors.OpError) as error:
            if not prefix.with_name(f"{prefix.name}.index").exists():
                state_path.unlink(missing_ok=True)  # half a checkpoint, written just now: it goes
            reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
            raise StorageError(f"cannot write the checkpoint at step {step} in {self.directory}: {reason}") from None
        self._prune()
        return prefix

    def steps(self) -> list[int]:
        """Env steps of the checkpoints on disk with both halves present, newest first."""
        if not self.directory.is_dir():
            return []
        tf_steps, state_steps = set(), set()
        for path in self.directory.iterdir():
            if match := _TF_INDEX.fullmatch(path.name):
                tf_steps.add(int(match.group(1)))
            elif match := _STATE_FILE.fullmatch(path.name):
                state_steps.add(int(match.group(1)))
        return sorted(tf_steps & state_steps, reverse=True)

    def restore(self) -> int:
        """Restore the newest complete checkpoint into the agent; returns its env step.

        A damaged checkpoint is skipped for the next older one; ``self.skipped`` says which and why.
        """
        self.skipped = self._incomplete()
        for step in self.steps():
            try:
                state = load_numpy_state(self._state_path(step))
                self._restore_tf(step)
                self.agent.load_numpy_state(state)
                self.agent.weights_replaced()
            except CheckpointError as error:
                self.skipped.append(f"skipped checkpoint at step {step}: {error}")
                continue
            self.restored_extra_state = state.get("_extra", {})
            return step
        found = "; ".join(self.skipped) if self.skipped else "the run stopped before its first checkpoint"
        raise CheckpointError(f"no complete checkpoint in {self.directory}: {found}")

    def _restore_tf(self, step: int) -> None:
        prefix = str(self.directory / f"ckpt-{step}")
        try:
            self.checkpoint.read(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{prefix} is corrupt or from a different configuration ({first_line})") from None

    def _incomplete(self) -> list[str]:
        """One line for each checkpoint of which only one half is on disk (a kill while it was written)."""
        if not self.directory.is_dir():
            return []
        complete = set(self.steps())
        lines = []
        for path in sorted(self.directory.iterdir()):
            match = _TF_INDEX.fullmatch(path.name) or _STATE_FILE.fullmatch(path.name)
            if match and int(match.group(1)) not in complete:
                lines.append(f"skipped checkpoint at step {match.group(1)}: only {path.name} was written")
        return lines

    def _prune(self) -> None:
        """Remove checkpoints older than the newest ``max_to_keep`` readable ones, and leftovers of
        interrupted writes. A damaged checkpoint does not count: it is no checkpoint to go back to."""
        keep = [step for step in self.steps() if self._readable(step)][: self.max_to_keep]
        for path in self.directory.iterdir():
            if re.fullmatch(r"ckpt-\d+_temp", path.name) and path.is_dir():  # TensorFlow's, from a killed write
                shutil.rmtree(path)
                continue
            match = re.fullmatch(r"(?:ckpt|state)-(\d+)\..*", path.name)
            if match and keep and int(match.group(1)) < keep[-1] and path.is_file():
                path.unlink()

    def _readable(self, step: int) -> bool:
        """Whether both halves of the checkpoint at ``step`` open: the npz's zip directory and the TF
        index. A quick look (milliseconds, whatever the replay memory's size), not a restore."""
        try:
            with zipfile.ZipFile(self._state_path(step)) as archive:
                archive.getinfo(f"{_JSON_KEY}.npy")
            tf.train.load_checkpoint(str(self.directory / f"ckpt-{step}"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, tf.errors.OpError):
            return False
        return True

    def _state_path(self, step: int) -> Path:
        return self.directory / f"state-{step}.npz"
