"""The SavedModel contract, and ``load_policy`` for numpy-in/numpy-out use.

An export is a directory that ``tf.saved_model.load`` opens in a process that never imported tfrl:

- ``action(observation)``: a batch ``[None, *obs_shape]`` as the env gives it (int64 for Discrete and
  MultiDiscrete spaces, uint8 or bool for frames, float32 otherwise) → the deterministic action; also the ``serving_default``
  signature. A float observation holding NaN or infinity is refused inside the graph.
  ``sample_action``, ``q_values`` and ``value`` where the agent has them.
- ``assets/tfrl.json``: algorithm, env id, spaces, config, training steps, the score of this
  policy (by default the run's best-evaluated one) with the env step it was reached at, and the
  ``files`` tfrl wrote (anything else in the directory is the user's, kept on re-export).
- ``<network>.keras`` beside it: the trainable networks, for fine-tuning in Keras, as functional
  models of Keras' own layers (``tfrl.nets._Network.plain``) with the same weights and outputs, so
  ``keras.models.load_model`` opens them without tfrl (a user's own torso layer class is needed
  where it was one, as ``custom_objects``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from tfrl import __version__
from tfrl.errors import ExportError

DEFAULT_EXPORT_DIR = "exports"  # users' runs; saved_models/ holds the shipped zoo
METADATA_FILE = Path("assets") / "tfrl.json"
FORMAT = "tfrl-policy"
ENDPOINTS = ("action", "sample_action", "q_values", "value")
NAME_MAX = 255  # bytes in one file name (Linux, macOS, NFS)
LOCK_FILE = ".tfrl-lock"  # in a holder directory of an export being written or removed
STALE_AFTER_S = 24 * 3600  # an unlocked holder of another host or container untouched this long is abandoned
# a holder's name beyond its stem: ".", "-new-", the 8-digit tag, "-", a pid (up to 10 digits), "-", mkdtemp's 8
_HOLDER_NAME_EXTRA = 1 + 5 + 8 + 1 + 10 + 1 + 8
STEPPING = ("action", "sample_action")  # a recurrent policy's state advances only when it acts


def _named_output(function: Any, name: str) -> Any:
    """A signature function that names its outputs, for TF Serving and ``saved_model_cli``.

    A recurrent policy's endpoints take ``(observation, state)`` and return ``(output, state)``: their
    signatures have the inputs ``observation`` and ``state`` and the outputs ``name`` and ``state``
    (the next state from ``action`` and ``sample_action``, the given one from ``value``).
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
    A recurrent policy's endpoints take and return a state as well; it passes through, and so do
    ``initial_state`` and ``state_shape``.
    """

    def __init__(self, policy: tf.Module, action_grid: np.ndarray) -> None:
        super().__init__(name="grid_action_policy")
        self.policy = policy
        # float rows of a discretised Box, or the int64 actions of a Discrete space that starts elsewhere than 0
        self.action_grid = tf.constant(action_grid, tf.int64 if action_grid.dtype.kind == "i" else tf.float32)
        for name in ("action", "sample_action"):
            if hasattr(policy, name):
                setattr(self, name, self._on_grid(getattr(policy, name)))
        for name in ("q_values", "value", "initial_state", "state_shape"):
            if hasattr(policy, name):
                setattr(self, name, getattr(policy, name))

    def _on_grid(self, choose_index: Any) -> Any:
        spec = choose_index.input_signature
        if len(spec) == 1:
            return tf.function(
                lambda observation: tf.gather(self.action_grid, choose_index(observation)), input_signature=spec
            )

        def stateful(observation: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            index, next_state = choose_index(observation, state)
            return tf.gather(self.action_grid, index), next_state

        return tf.function(stateful, input_signature=spec)


FRAME_DTYPES = ("uint8", "bool")


def observation_dtype(space: Mapping[str, Any]) -> tf.DType:
    """The dtype an export takes observations in: the env's own integers for Discrete and
    MultiDiscrete spaces, the env's own frames for a uint8 or bool Box (Atari's uint8 stacks,
    MinAtar's bool channels: the network scales them inside), float32 for everything else."""
    if space.get("type") in ("Discrete", "MultiDiscrete"):
        return tf.int64
    if space.get("type") == "Box" and space.get("dtype") in FRAME_DTYPES:
        return tf.as_dtype(space["dtype"])
    return tf.float32


def _guarded(function: Any, observation_space: Mapping[str, Any]) -> Any:
    """``function`` behind the export's input contract: observations in the env's dtype, cast to
    float32 for the networks, and refused inside the graph when a float holds NaN or infinity.

    The check is an ``Assert`` in the SavedModel itself, so it holds in TF Serving, ``TFSMLayer`` and
    every other caller that never sees Python; converters that cannot run it (TFLite) drop it.
    """
    dtype = observation_dtype(observation_space)
    observation_spec, *rest = function.input_signature
    spec = [tf.TensorSpec(observation_spec.shape, dtype, name="observation"), *rest]

    def guarded(observation: tf.Tensor, *state: tf.Tensor) -> Any:
        if dtype.is_floating:
            finite = tf.reduce_all(tf.math.is_finite(observation))
            message = "observation holds NaN or infinite values; a policy cannot act on them"
            with tf.control_dependencies([tf.debugging.Assert(finite, [message])]):
                observation = tf.identity(observation)
        return function(tf.cast(observation, tf.float32), *state)

    return tf.function(guarded, input_signature=spec)


def is_export(path: Path) -> bool:
    """Whether ``path`` is a directory that tfrl exported (its metadata says so)."""
    try:
        return json.loads((path / METADATA_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_export_target(
    path: str | os.PathLike | None,
    *,
    run_dir: str | os.PathLike | None = None,
    logdir: str | os.PathLike | None = None,
) -> None:
    """Refuse, before anything is written, an export path tfrl may not replace.

    tfrl writes a new export or replaces an earlier tfrl export (or an empty directory); it never
    deletes anything else, so an existing file, or a directory holding anything but a tfrl export,
    is an ``ExportError`` naming it. So is a path that is or holds ``run_dir`` (the run exported) or
    ``logdir`` (where a new run is written): replacing the export would delete the run.
    """
    if path is None:
        return
    path = Path(path)
    too_long = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if too_long:
        raise ExportError(
            f"cannot export to {path}: a name in it is {len(os.fsencode(too_long[0]))} bytes long, "
            f"and a file name may have at most {NAME_MAX}"
        )
    for what, inner in (("run directory", run_dir), ("log directory (--logdir)", logdir)):
        if inner is not None and _holds(path, Path(inner)):
            raise ExportError(
                f"cannot export to {path}: it holds the {what} {inner}, which replacing the export would "
                "delete; export outside it (--export-dir / --out)"
            )
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ExportError(f"cannot export to {path}: {parent} is a file, not a directory")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ExportError(
            f"cannot export to {path}: it exists and is not a directory; tfrl replaces only an earlier tfrl export"
        )
    if path.is_dir() and any(path.iterdir()) and not is_export(path):
        raise ExportError(
            f"cannot export to {path}: it is a directory that is not a tfrl export, and tfrl never deletes "
            "what it did not write; choose another path (--export-dir / --out) or empty it yourself"
        )
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not os.access(existing, os.W_OK):
        raise ExportError(f"cannot export to {path}: {existing} is not writable")


def _holds(outer: Path, inner: Path) -> bool:
    """Whether ``inner`` is ``outer`` or lies inside it, symbolic links and ``..`` resolved."""
    outer, inner = outer.resolve(), inner.resolve()
    return inner == outer or outer in inner.parents


def export_policy(
    agent: Any, path: str | os.PathLike, metadata: dict[str, Any], action_grid: np.ndarray | None = None
) -> Path:
    """Write ``agent.policy()`` and its networks to ``path``, replacing an earlier export only on success.

    The export is written complete in a locked holder directory beside ``path`` (``_held_directory``);
    then an earlier export at ``path`` is renamed aside, the new one renamed in, and the old one
    removed, so a kill at any
    instant leaves a complete export (the new or the old one) and never a half-written one. What
    tfrl writes is listed in the metadata's ``files``; everything else in an earlier export (a
    README, a GIF someone added) is copied into the new one, so re-exporting deletes none of it. With
    ``action_grid`` (rows = the real actions of a discretised env) the policy is wrapped in a
    ``GridActionPolicy``, so ``action`` returns real actions rather than indices.
    """
    path = Path(path)
    check_export_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = agent.policy() if action_grid is None else GridActionPolicy(agent.policy(), action_grid)
    # Keras 3 models are not children in TensorFlow's object graph: without this their weights are
    # saved only as captures of the functions, which TFLite cannot freeze (the converted model reads
    # NaN). ``weight.value`` is the tf.Variable the functions capture.
    module.network_weights = [weight.value for network in agent.networks().values() for weight in network.weights]
    endpoints = [name for name in ENDPOINTS if hasattr(module, name)]
    for name in endpoints:
        setattr(module, name, _guarded(getattr(module, name), metadata["observation_space"]))
    signatures = {name: _named_output(getattr(module, name), name).get_concrete_function() for name in endpoints}
    signatures["serving_default"] = signatures["action"]
    with _held_directory(path, "new") as staging:
        staging.mkdir()  # with the umask's permissions, for a model server to read
        tf.saved_model.save(module, str(staging), signatures=signatures)
        for name, network in agent.networks().items():
            network.plain().save(staging / f"{name}.keras")  # Keras' own layers: loads without tfrl
        (staging / METADATA_FILE).parent.mkdir(exist_ok=True)
        (staging / METADATA_FILE).touch()  # so that it is among the files listed below
        full_metadata = {
            "format": FORMAT,
            "tfrl_version": __version__,
            "endpoints": endpoints,
            "observation_dtype": observation_dtype(metadata["observation_space"]).name,
            **metadata,
        }
        if hasattr(module, "state_shape"):  # a recurrent policy: endpoints take and return a state
            full_metadata["state_shape"] = list(module.state_shape)
        full_metadata["files"] = sorted(_entries(staging))  # what tfrl wrote; anything else is the user's
        try:
            text = json.dumps(full_metadata, indent=2, allow_nan=False)  # strict JSON for any reader
        except ValueError:
            raise ExportError(f"the export's metadata holds NaN or infinity, which is not JSON: {metadata}") from None
        (staging / METADATA_FILE).write_text(text)
        _swap_in(staging, path)
    _remove_leftovers(path)
    return path


def _swap_in(staging: Path, path: Path) -> None:
    """Put the complete export ``staging`` at ``path``; an earlier export there goes only afterwards."""
    check_export_target(path)  # again: something may have appeared there while the export was written
    if not path.exists():
        os.replace(staging, path)
        return
    _carry_user_files(path, staging)
    with _held_directory(path, "old") as aside:
        os.replace(path, aside)
        os.replace(staging, path)


@functools.cache
def _namespace_tag() -> str:
    """Eight hex digits naming this host and PID namespace: only where the tag is its own can an
    export tell from a pid whether the process that left a directory still runs."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (macOS): the host alone
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


def _stem(path: Path) -> str:
    """``path.name``, or for a long one its start and a hash of it, so that a holder's name
    ``.<stem>-new-<tag>-<pid>-<random>`` fits in ``NAME_MAX`` bytes."""
    name = os.fsencode(path.name)
    room = NAME_MAX - _HOLDER_NAME_EXTRA
    if len(name) <= room:
        return path.name
    return name[: room - 9].decode("utf-8", "ignore") + "~" + hashlib.sha256(name).hexdigest()[:8]


@contextlib.contextmanager
def _held_directory(path: Path, kind: str) -> Iterator[Path]:
    """A place ``<holder>/export`` for an export being written (``kind`` new) or removed (old), in a
    new holder directory beside ``path`` that is removed at the end.

    While this lives the holder's ``LOCK_FILE`` is ``flock``-ed, so that an export into the same
    directory from another host or container, which cannot see this pid, leaves it alone; the export
    itself is one level down, so the lock file never becomes part of it.
    """
    prefix = f".{_stem(path)}-{kind}-{_namespace_tag()}-{os.getpid()}-"
    holder = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    try:
        with open(holder / LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield holder / "export"
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _entries(root: Path) -> list[str]:
    """Every file, symbolic link and empty directory under ``root``, as POSIX paths relative to it."""
    entries = []
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        names = files + [name for name in subdirectories if (here / name).is_symlink()]
        if not names and not subdirectories:
            names = [""]  # an empty directory
        entries += [(here / name).relative_to(root).as_posix() for name in names if here / name != root]
    return entries


# What tfrl wrote in an export made before tfrl.json listed its ``files``.
_OLD_EXPORT_FILES = re.compile(
    rf"saved_model\.pb|fingerprint\.pb|variables/.+|{re.escape(METADATA_FILE.as_posix())}|[^/]+\.keras"
)


def _tfrl_wrote(export: Path) -> Callable[[str], bool]:
    """Whether tfrl wrote an entry of ``export``: one its tfrl.json lists in ``files``, or, in an
    export made before that list, its SavedModel, networks or tfrl.json."""
    listed = json.loads((export / METADATA_FILE).read_text()).get("files")
    if isinstance(listed, list):
        return set(listed).__contains__
    return lambda entry: _OLD_EXPORT_FILES.fullmatch(entry) is not None


def _carry_user_files(old: Path, staging: Path) -> None:
    """Copy into ``staging`` everything in the earlier export ``old`` that tfrl did not write (a
    README, a GIF, notes), so replacing the export deletes none of it."""
    tfrl_wrote = _tfrl_wrote(old)
    for entry in _entries(old):
        if tfrl_wrote(entry):
            continue
        source, target = old / entry, staging / entry
        if target.exists() or target.is_symlink():
            raise ExportError(
                f"cannot export to {old}: tfrl did not write its {entry}, and the new export has a file of that "
                "name; move yours away and export again"
            )
        if source.is_dir() and not source.is_symlink():
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)


def _remove_leftovers(path: Path) -> None:
    """Remove what exports to ``path`` killed midway left beside it: holder directories with tfrl's
    names (see ``_held_directory``) that ``_abandoned`` says no live export owns; never anything else."""
    pattern = re.compile(rf"\.{re.escape(_stem(path))}-(?:new|old)-(?:([0-9a-f]{{8}})-)?(\d+)-\w+")
    for sibling in path.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match and sibling.is_dir() and not sibling.is_symlink() and _abandoned(sibling, *match.groups()):
            shutil.rmtree(sibling, ignore_errors=True)  # another export may be removing it too


def _abandoned(holder: Path, tag: str | None, pid: str) -> bool:
    """Whether no live export owns ``holder``: its process, of this host and PID namespace, is gone;
    or (a process elsewhere, or a tfrl that named no tag) its lock is free and it is a day old."""
    if tag == _namespace_tag() and not _process_alive(int(pid)):
        return True
    try:
        age = time.time() - holder.stat().st_mtime
    except OSError:  # already removed
        return False
    return age > STALE_AFTER_S and not _locked(holder / LOCK_FILE)


def _locked(lock: Path) -> bool:
    """Whether a live export holds ``lock`` (a missing lock file holds nothing; a lock that cannot
    be tried counts as held)."""
    try:
        descriptor = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)
    return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_REQUIRED_METADATA = ("algorithm", "env_id", "observation_space", "action_space", "endpoints")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``tfrl.json`` of an export, or an ``ExportError`` saying why ``path`` is not one."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"no such policy directory: {path}")
    if not (path / "saved_model.pb").exists():
        raise ExportError(f"{path} is not a SavedModel (no saved_model.pb); pass a directory written by tfrl export")
    metadata_path = path / METADATA_FILE
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, ValueError):
        raise ExportError(
            f"{path} is a SavedModel but not a tfrl export: {metadata_path} is missing or unreadable"
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise ExportError(f"{metadata_path} is not tfrl policy metadata (format {found!r})")
    missing = [key for key in _REQUIRED_METADATA if key not in metadata]
    if not missing and "shape" not in metadata["observation_space"]:
        missing = ["observation_space.shape"]
    if missing:
        raise ExportError(f"{metadata_path} is damaged: it has no {', '.join(missing)}")
    return metadata


def _load_saved_model(path: Path) -> Any:
    """``tf.saved_model.load``, with a damaged or incomplete export named instead of a deep traceback."""
    try:
        return tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError, DecodeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not (path / "variables").is_dir():
            detail = "its variables/ directory is missing"
        raise ExportError(
            f"{path} is a damaged export: saved_model.pb or variables/ cannot be read ({detail})"
        ) from None


class Policy:
    """A loaded export that takes and returns numpy: one observation or a batch of them.

    >>> policy = load_policy("saved_models/dqn-CartPole-v1")  # a shipped policy, or one of yours in exports/
    >>> policy(observation)           # one action for one observation
    >>> policy.q_values(batch)        # any endpoint the export has

    A recurrent export (``state_shape`` in its metadata) keeps one state row per observation row
    between calls, starting from zeros; call ``reset_state(batch_size)`` when new episodes begin.
    Only acting (``policy(...)``, ``sample_action``) advances it: ``value`` and ``q_values`` read
    it, so reading them changes no later action (also with exports whose graph would advance it).
    A stateless policy's ``reset_state`` does nothing. Observations of the wrong shape, or holding
    NaN or infinity, are an ``ExportError`` that names them.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.observation_shape = tuple(self.metadata["observation_space"]["shape"])
        self.observation_dtype = np.dtype(self.metadata.get("observation_dtype", "float32"))
        self._module = _load_saved_model(self.path)
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
        return self._run("action", observation)

    def __getattr__(self, name: str) -> Any:
        if name in ENDPOINTS:
            if name not in self.__dict__.get("endpoints", ()):
                raise AttributeError(
                    f"this {self.metadata['algorithm']} policy has no {name!r} endpoint; it has {self.endpoints}"
                )
            return lambda observation: self._run(name, observation)
        raise AttributeError(name)

    def _checked(self, observation: Any) -> tuple[np.ndarray, bool]:
        """The observation as a batch in the export's dtype, and whether it was a single one."""
        try:
            with np.errstate(over="ignore"):  # a float32 overflow becomes inf, refused just below
                observation = np.asarray(observation, dtype=self.observation_dtype)
        except (ValueError, TypeError) as error:
            raise ExportError(f"observation is not an array of numbers of one shape: {error}") from None
        single = observation.shape == self.observation_shape
        if not single and observation.shape[1:] != self.observation_shape:
            expected = ", ".join(map(str, self.observation_shape))
            raise ExportError(
                f"observation has shape {observation.shape}, but this policy ({self.metadata['algorithm']} on "
                f"{self.metadata['env_id']}) expects {self.observation_shape} or a batch (N, {expected})"
            )
        batch = observation[None] if single else observation
        if batch.dtype.kind == "f" and not np.isfinite(batch).all():  # after the cast: 1e40 is inf in float32
            rows = np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(axis=1))
            where = "the observation" if single else f"observation row(s) {rows[:5].tolist()}"
            raise ExportError(f"{where} holds NaN or infinite values (in float32); a policy cannot act on them")
        return batch, single

    def _run(self, endpoint: str, observation: Any) -> np.ndarray:
        batch, single = self._checked(observation)
        if self.state_shape is None:
            result = getattr(self._module, endpoint)(tf.constant(batch)).numpy()
        else:
            state = self.state
            if state is None or len(state) != len(batch):  # new episodes; only acting keeps their state
                state = np.zeros((len(batch), *self.state_shape), np.float32)
            result, next_state = getattr(self._module, endpoint)(tf.constant(batch), tf.constant(state))
            result = result.numpy()
            if endpoint in STEPPING:
                self.state = next_state.numpy()
        return result[0] if single else result


def load_policy(path: str | os.PathLike) -> Policy:
    """Load a tfrl export for numpy use; raises ``ExportError`` for a path that is not one."""
    return Policy(path)
