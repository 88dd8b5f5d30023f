"""Callbacks: your own code at each point of a run, for every algorithm (A3C's workers included).

    class PrintBest(tfrl.Callback):
        def on_evaluation(self, run, returns, is_best):
            if is_best:
                print(f"new best {returns.mean():.1f} at step {run.step}")

    tfrl.train("ppo", "CartPole-v1", callbacks=[PrintBest(), tfrl.StopAtReturn(475)])

The training loop calls each hook of each callback in order: ``on_training_start``, then for
every batch of env steps the stream yields (one vector step, one rollout, or one A3C update)
``on_update``, ``on_episode`` for each finished episode, ``on_evaluation`` after each evaluation,
``on_checkpoint`` after each checkpoint, and ``on_training_end`` once the policy is exported.
Any hook may call ``run.stop(reason)``: the run then ends as it ends at its last step (an
evaluation if the last one was not at this step, a checkpoint, the best policy exported), and
``TrainResult.stopped_by`` says why. ``run.log(name, value)`` records a scalar of your own beside
tfrl's: TensorBoard's ``custom/<name>`` and a row of ``scalars.jsonl``.

A hook that raises stops the run as a failing env does: a checkpoint, the best policy exported,
and how to resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfrl.errors import CallbackFailed, ConfigError, raised


class Run:
    """What a callback sees of the run: where it is, what it trains, and two things it may do.

    ``step`` is the env step now; ``agent`` the agent (its networks, ``config``, ``env_steps``);
    ``settings`` the run's ``RunSettings``; ``run_dir`` its directory; ``best_return`` and
    ``best_step`` the best evaluation so far (None before the first); ``export_path`` where the
    policy went (set before ``on_training_end``).
    """

    def __init__(self, agent: Any, settings: Any, run_dir: Path, best: Any, log: Callable[[int, str, float], None]):
        self.agent, self.settings, self.run_dir = agent, settings, run_dir
        self.step = agent.env_steps
        self.export_path: Path | None = None
        self.stop_reason: str | None = None
        self._best, self._log = best, log

    @property
    def best_return(self) -> float | None:
        return self._best.score

    @property
    def best_step(self) -> int | None:
        return self._best.step

    def stop(self, reason: str) -> None:
        """End the run cleanly after this hook, saying ``reason`` (kept in ``TrainResult.stopped_by``)."""
        self.stop_reason = str(reason)

    def log(self, name: str, value: float) -> None:
        """Record ``value`` at this env step as TensorBoard's ``custom/<name>`` and in ``scalars.jsonl``."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"run.log needs a non-empty name, got {name!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(f"run.log({name!r}, {value!r}): the value must be a finite number")
        self._log(self.step, name, number)


class Callback:
    """Base class of callbacks: override the hooks you need; each does nothing by default."""

    def on_training_start(self, run: Run) -> None:
        """Before the first env step of this call (after a resume's restore)."""

    def on_update(self, run: Run, metrics: Mapping[str, float] | None) -> None:
        """After each batch of env steps; ``metrics`` are the losses of the update it made, if any."""

    def on_episode(self, run: Run, episode_return: float, length: int) -> None:
        """After each finished training episode."""

    def on_evaluation(self, run: Run, returns: np.ndarray, is_best: bool) -> None:
        """After each evaluation; ``is_best`` when it became the best policy (the one exported)."""

    def on_checkpoint(self, run: Run, step: int) -> None:
        """After each checkpoint is on disk."""

    def on_training_end(self, run: Run) -> None:
        """After the last checkpoint and the export (``run.export_path``)."""


class StopAtReturn(Callback):
    """Stop once an evaluation's mean return reaches ``threshold`` (any env, any threshold)."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)

    def on_evaluation(self, run: Run, returns: np.ndarray, is_best: bool) -> None:
        mean = float(np.mean(returns))
        if mean >= self.threshold:
            run.stop(f"StopAtReturn: evaluation mean {mean:.1f} reached {self.threshold:g}")


class StopWhenNoImprovement(Callback):
    """Stop when ``evaluations`` evaluations in a row have not beaten the best one (early stopping)."""

    def __init__(self, evaluations: int):
        if int(evaluations) < 1:
            raise ConfigError(f"StopWhenNoImprovement needs at least 1 evaluation, got {evaluations}")
        self.evaluations = int(evaluations)
        self.without = 0

    def on_evaluation(self, run: Run, returns: np.ndarray, is_best: bool) -> None:
        self.without = 0 if is_best else self.without + 1
        if self.without >= self.evaluations:
            run.stop(
                f"StopWhenNoImprovement: {self.without} evaluations without beating {run.best_return:.1f} "
                f"(env step {run.best_step})"
            )


class Callbacks:
    """The run's callbacks, called in order; a hook that raises is a ``CallbackFailed`` naming it."""

    def __init__(self, callbacks: list[Callback], run: Run):
        self.callbacks, self.run = callbacks, run

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def notify(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            try:
                getattr(callback, hook)(self.run, *args)
            except Exception as error:  # noqa: BLE001 — a user's hook may raise anything; the run keeps its work
                headline, details = raised(error)
                raise CallbackFailed(
                    f"the callback {type(callback).__name__}.{hook} raised {headline} at env step {self.run.step}\n"
                    f"{details}"
                ) from None


def check_callbacks(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a list, refused by name unless each is a ``tfrl.Callback``."""
    listed = list(callbacks or [])
    for callback in listed:
        if not isinstance(callback, Callback):
            raise ConfigError(
                f"callbacks must be tfrl.Callback instances (subclass it and override its on_* hooks); got {callback!r}"
            )
    return listed
