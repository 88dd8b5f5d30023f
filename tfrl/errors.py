"""Errors tfrl raises for bad input: each names the bad value and what would be valid."""

import traceback


class TfrlError(ValueError):
    """Base class of every error tfrl raises for bad input or bad files."""


class ConfigError(TfrlError):
    """A config field, preset or override that is not valid."""


class EnvError(TfrlError):
    """An unknown env id, or a space the algorithm cannot handle."""


class ExportError(TfrlError):
    """A path that is not a tfrl export, or an observation that does not fit the policy."""


class CheckpointError(TfrlError):
    """A run directory or checkpoint that is missing, foreign or corrupt."""


class TrainingDiverged(TfrlError):
    """A loss or a network weight became NaN or infinite: the run stops, keeping its last finite checkpoint."""


class WorkerError(TfrlError):
    """A worker process of a parallel agent (A3C) raised or died; the message names the worker and the cause."""


class EnvFailed(TfrlError):
    """The env raised, or returned a NaN or infinite reward or observation, during a run: the env is the
    cause, not the learning. The run keeps a checkpoint and its best policy; the message says where."""


class StorageError(TfrlError):
    """A checkpoint, log or export could not be written (a full disk, a directory that refuses writes)."""


class RunLockedError(TfrlError):
    """The run directory is being trained by another live tfrl process."""


class CallbackFailed(TfrlError):
    """A user's callback raised during a run: the run keeps a checkpoint and its best policy; the message
    names the callback and its hook."""


def raised(error: BaseException) -> tuple[str, str]:
    """What a user's code (an env, a callback) raised, for a tfrl error that reports it: the exception's
    type and message, and its whole traceback, which points at the user's line."""
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
    return f"{type(error).__name__}: {error}", details
