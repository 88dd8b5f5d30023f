"""Training loops, evaluation, and the run directory that ties logging, checkpoints and export together.

A run lives in ``runs/<algo>-<env>-<seed>-<time>/``: ``run.json`` (what to rebuild it from),
``episodes.jsonl``, ``evaluations.jsonl``, ``events.jsonl``, ``tensorboard/`` and ``checkpoints/``. Training
stops at ``total_steps`` or as soon as the mean evaluation return reaches the env's ``reward_threshold``.

One loop drives every algorithm: it consumes a stream of ``(env step, finished episodes, metrics)``,
either from stepping vector envs for the agent (``_collected``) or from an agent that produces its own
updates (A3C's pool of workers, ``agent.update_stream``), and owns the cadence around it: logging,
evaluation, best-policy tracking, checkpoints and the threshold stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfrl import __version__
from tfrl.agents import get_agent, make_config
from tfrl.agents.base import UpdateProducer
from tfrl.callbacks import Callback, Callbacks, Run, check_callbacks
from tfrl.checkpoint import Checkpointer, networks_finite, require_finite_weights
from tfrl.envs import (
    MAX_SEED,
    action_grid,
    check_episode_seeds,
    check_observation,
    check_user_env,
    describe_space,
    env_actions,
    env_name,
    env_reference,
    final_observations,
    limited_for_playing,
    make_env,
    make_vector_env,
    preprocessing,
    require_finite_from_env,
    require_importable,
)
from tfrl.errors import (
    CallbackFailed,
    CheckpointError,
    ConfigError,
    EnvFailed,
    ExportError,
    StorageError,
    TfrlError,
    TrainingDiverged,
    WorkerError,
    raised,
)
from tfrl.export import DEFAULT_EXPORT_DIR, check_export_target, export_policy, read_metadata
from tfrl.logger import RunLogger
from tfrl.nets import require_importable_torso
from tfrl.pools import BACKENDS, check_backend, cluster
from tfrl.rundir import RunLock, replace_text

RUN_FILE = "run.json"
METRICS_EVERY = 1_000
PROGRESS_EVERY = 256
EVALUATION_SEED_OFFSET = 1_000_000  # evaluation episodes never share seeds with training envs


class Evaluator:
    """Runs ``episodes`` seeded episodes side by side, acting for all of them in one batched call.

    ``discretize`` wraps a Box action space as in training, for a policy that returns action indices;
    ``frame_stack`` stacks frames as in training (``tfrl.envs.make_env``). Evaluation envs are never
    ``training`` ones: Atari episodes are whole games scored in raw points.
    """

    def __init__(
        self,
        env_id: str,
        episodes: int = 20,
        seed: int = 0,
        discretize: int | None = None,
        frame_stack: int = 0,
        indexed_actions: bool = False,
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if episodes < 1:
            raise ConfigError(f"evaluation episodes must be at least 1, got {episodes}")
        check_episode_seeds(seed, episodes)
        made = [
            make_env(
                env_id,
                discretize=discretize,
                frame_stack=frame_stack,
                indexed_actions=indexed_actions,
                env_kwargs=env_kwargs,
            )
            for _ in range(episodes)
        ]
        self.envs = limited_for_playing(made, env_id)
        self.env_id, self.seed = env_id, seed

    def __call__(self, policy: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Undiscounted return of each episode under ``policy`` (a batch of observations → actions).

        A stateful (recurrent) policy has ``reset_state(batch_size)``: it is reset first and then
        always gets every episode's row, finished ones too, so row ``i`` of its state stays episode ``i``'s.
        An env that raises, or returns a NaN or infinite reward or observation, is an ``EnvFailed``
        naming the episode: such a return is no score.
        """
        try:
            observations = np.stack([env.reset(seed=self.seed + index)[0] for index, env in enumerate(self.envs)])
        except Exception as error:  # noqa: BLE001 — a user's env may raise anything; EnvFailed reports it whole
            raise env_failure(self.env_id, error, "resetting the evaluation episodes") from None
        returns = np.zeros(len(self.envs))
        active = np.ones(len(self.envs), bool)
        reset_state = getattr(policy, "reset_state", None)
        stateful = reset_state is not None
        if reset_state is not None:
            reset_state(len(self.envs))
        while active.any():
            indices = np.flatnonzero(active)
            actions = policy(observations)[indices] if stateful else policy(observations[indices])
            for index, action in zip(indices, actions, strict=True):
                try:
                    observation, reward, terminated, truncated, _ = self.envs[index].step(action)
                except Exception as error:  # noqa: BLE001 — as above
                    raise env_failure(self.env_id, error, self._where(index)) from None
                if not math.isfinite(reward):
                    require_finite_from_env(self.env_id, np.asarray([reward]), "reward", self._where(index))
                observations[index] = observation
                returns[index] += reward
                active[index] = not (terminated or truncated)
            require_finite_from_env(self.env_id, observations, "observation", "in an evaluation episode")
        require_finite_from_env(self.env_id, returns, "episode return", "in evaluation (an overflowing sum)")
        return returns

    def _where(self, index: Any) -> str:
        return f"in evaluation episode {index} (seed {self.seed + index})"

    def close(self) -> None:
        for env in self.envs:
            env.close()


def env_failure(env_id: str, error: Exception, when: str) -> Exception:
    """The exception an env's own code raised, as an ``EnvFailed`` naming the env and keeping its
    traceback, so the loop can checkpoint and say how to resume instead of losing the run. tfrl's own
    errors (a wrapper's) pass unchanged."""
    if isinstance(error, TfrlError):
        return error
    headline, details = raised(error)
    return EnvFailed(f"the env {env_id} raised {headline} {when}\n{details}")


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env: str | Callable[..., gym.Env],
    episodes: int = 20,
    seed: int = 0,
    discretize: int | None = None,
    frame_stack: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` deterministic, seeded episodes of ``policy`` on ``env`` (an env id,
    ``module:EnvId``, or a class or function making the env, given ``env_kwargs``)."""
    evaluator = Evaluator(env_reference(env), episodes, seed, discretize, frame_stack, env_kwargs=env_kwargs)
    try:
        return evaluator(policy)
    finally:
        evaluator.close()


# What a new run gets for the settings no agent or preset chooses.
NEW_RUN_DEFAULTS: dict[str, Any] = {"seed": 0, "eval_episodes": 20, "stop_at_threshold": True, "discretize": None}
POSITIVE_SETTINGS = ("total_steps", "num_envs", "eval_every", "eval_episodes", "checkpoint_every")
# What --resume may change: the run's length and cadence. The rest (seed, num_envs, discretize) made the saved state.
RESUMABLE_SETTINGS = ("total_steps", "eval_every", "eval_episodes", "checkpoint_every", "stop_at_threshold")


def _require_type(name: str, value: Any, kinds: type | tuple[type, ...], expected: str) -> None:
    if (isinstance(value, bool) and kinds is int) or not isinstance(value, kinds):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


def _flag(name: str) -> str:
    """The command-line flag of a run setting."""
    return {"total_steps": "--steps", "stop_at_threshold": "--no-early-stop"}.get(name, f"--{name.replace('_', '-')}")


@dataclasses.dataclass
class RunSettings:
    """Everything that defines a run besides the agent's config; saved in ``run.json``.

    ``export_dir`` is where the policy goes at the end (None: no export); ``export_final`` exports
    the last weights instead of the best-evaluated ones. Both are kept so ``--resume`` honours them.
    ``export_name`` is the export's directory in ``export_dir``, chosen when the run starts: the
    first free one of ``<algorithm>-<env>``, ``…-2``, ``…-3``, so no run replaces another's policy,
    unless ``replace_export`` (then always ``<algorithm>-<env>``, replacing an earlier tfrl export).
    ``backend`` is where an agent with workers (A3C) runs them: ``process`` (this machine) or ``ray``
    (the cluster at ``ray_address``, or a new local one).
    """

    algorithm: str
    env_id: str  # an env id, module:EnvId or module:factory (tfrl.envs.env_reference)
    seed: int = 0
    total_steps: int = 100_000
    num_envs: int = 4
    eval_every: int = 2_500
    eval_episodes: int = 20
    checkpoint_every: int = 10_000
    stop_at_threshold: bool = True
    discretize: int | None = None  # N evenly spaced actions per dimension of a Box action space
    export_dir: str | None = DEFAULT_EXPORT_DIR
    export_final: bool = False
    backend: str = "process"
    ray_address: str | None = None
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # the env's own arguments
    export_name: str | None = None
    replace_export: bool = False
    run_id: str | None = None  # the run's own name for itself, kept in its exports: a copied run is the same run

    def validate(self) -> None:
        """Refuse values that cannot run, and values of the wrong type (a hand-edited run.json)."""
        for name in ("algorithm", "env_id", "backend"):
            _require_type(name, getattr(self, name), str, "a string")
        for name in ("export_dir", "ray_address", "export_name", "run_id"):
            _require_type(name, getattr(self, name), (str, type(None)), "a string or null")
        for name in ("stop_at_threshold", "export_final", "replace_export"):
            _require_type(name, getattr(self, name), bool, "true or false")
        for name in ("seed", *POSITIVE_SETTINGS):
            _require_type(name, getattr(self, name), int, "an integer")
        if self.discretize is not None:
            _require_type("discretize", self.discretize, int, "an integer or null")
        for name in POSITIVE_SETTINGS:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.discretize is not None and self.discretize < 2:
            raise ConfigError(f"discretize must be at least 2 actions, got {self.discretize}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        _require_type("env_kwargs", self.env_kwargs, dict, "a table of the env's keyword arguments")
        try:
            json.dumps(self.env_kwargs, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(
                f"env_kwargs must be JSON values (numbers, strings, booleans, lists, tables) so that the env "
                f"can be made again on resume and evaluation; got {self.env_kwargs!r}"
            ) from None

    @property
    def name(self) -> str:
        """``<algorithm>-<env name>`` (``dqn-ALE-Pong-v5``, ``sac-Reach-v0`` for ``my_pkg.envs:Reach-v0``),
        so run and export directories stay one level deep."""
        return f"{self.algorithm}-{env_name(self.env_id)}"

    @property
    def export_path(self) -> Path | None:
        """Where this run's policy is exported, or None for a run that exports nothing."""
        if self.export_dir is None:
            return None
        return Path(self.export_dir) / (self.export_name or self.name)

    def choose_export_name(self, run_dir: Path | None = None) -> None:
        """Settle ``export_name``: this run's own export if it has one, else the first free name (or
        the plain name with ``replace_export``). Called at the start and again just before exporting,
        so a run that started meanwhile and took the name is not replaced either."""
        if self.export_dir is None:
            return
        if self.replace_export:
            self.export_name = self.name
            return
        folder = Path(self.export_dir)
        names = [self.export_name] if self.export_name else []
        names += [self.name if number == 1 else f"{self.name}-{number}" for number in range(1, 10_000)]
        self.export_name = next(name for name in names if not _another_runs_export(folder / name, self, run_dir))


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: where things were written and how the run ended.

    ``final_return`` is the last evaluation's mean return; ``best_return`` the best one, reached at
    env step ``best_step``: that policy is the export unless the run was told ``export_final``.
    ``setup_seconds`` is what this call spent before the run's clock (the ``time`` in its logs)
    started: building the agent and tracing its TensorFlow functions, or restoring a checkpoint.
    """

    run_dir: Path
    export_path: Path | None
    env_steps: int
    solved: bool
    final_return: float | None
    wall_seconds: float
    train_steps_per_second: float
    stopped_by: str | None = None  # the reason a callback gave for stopping the run early
    best_return: float | None = None
    best_step: int | None = None
    export_final: bool = False
    setup_seconds: float = 0.0
    agent: Any = dataclasses.field(default=None, repr=False)
    best: BestPolicy | None = dataclasses.field(default=None, repr=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Docker, systemd, Kubernetes and Slurm send): handled like Ctrl-C, with a checkpoint."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` for the duration of a run (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def require_finite_metrics(step: int, metrics: Mapping[str, float]) -> None:
    """Raise ``TrainingDiverged`` if a training metric (a loss, a mean Q) is NaN or infinite."""
    for name, value in metrics.items():
        if not np.isfinite(value):
            raise TrainingDiverged(
                f"training diverged at env step {step}: {name} is {value} "
                "(a learning rate too high for this problem is the usual cause)"
            )


class BestPolicy:
    """The best-evaluated weights of a run so far, its score, and where it was reached.

    Each evaluation that beats the best so far keeps a copy of every network's weights (a few
    arrays, copied a few dozen times a run). ``applied`` puts them into the networks for an export
    and then restores the current ones; ``state`` / ``load_state`` go into each checkpoint.
    """

    def __init__(self, agent: Any):
        self.agent = agent
        self.score: float | None = None
        self.std: float | None = None
        self.step: int | None = None
        self.episode: int | None = None
        self.episodes_evaluated = 0
        self.weights: dict[str, list[np.ndarray]] | None = None

    def consider(self, step: int, returns: np.ndarray, episode: int) -> bool:
        """Keep the agent's weights if ``returns`` beat the best mean so far; True when they did.

        A mean that is not a finite number never beats anything (NaN compares false both ways, so a
        plain ``<=`` would let it replace the best); the evaluator refuses such returns before this."""
        mean = float(np.mean(returns))
        if not math.isfinite(mean) or (self.score is not None and not mean > self.score):
            return False
        self.score, self.std, self.step, self.episode = mean, float(np.std(returns)), step, episode
        self.episodes_evaluated = len(returns)
        self.weights = {name: network.get_weights() for name, network in self.agent.networks().items()}
        return True

    def metadata(self) -> dict[str, Any] | None:
        """The export's ``evaluation`` entry for this policy."""
        if self.score is None:
            return None
        return {
            "policy": "best",
            "mean_return": self.score,
            "std_return": self.std,
            "episodes": self.episodes_evaluated,
            "env_step": self.step,
            "training_episode": self.episode,
        }

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The best weights in the agent's networks inside the block, the current ones after it."""
        if self.weights is None:
            yield
            return
        networks = self.agent.networks()
        current = {name: network.get_weights() for name, network in networks.items()}
        try:
            for name, network in networks.items():
                network.set_weights(self.weights[name])
            self.agent.weights_replaced()
            yield
        finally:
            for name, network in networks.items():
                network.set_weights(current[name])
            self.agent.weights_replaced()

    def state(self) -> dict[str, Any]:
        scalars = {
            "score": self.score,
            "std": self.std,
            "step": self.step,
            "episode": self.episode,
            "episodes_evaluated": self.episodes_evaluated,
        }
        if self.weights is None:
            return scalars
        weights = {
            name: {str(index): array for index, array in enumerate(arrays)} for name, arrays in self.weights.items()
        }
        return {**scalars, "weights": weights}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        self.score, self.std = state["score"], state["std"]
        self.step, self.episode = state["step"], state["episode"]
        self.episodes_evaluated = int(state["episodes_evaluated"])
        weights = state.get("weights")
        self.weights = (
            None
            if weights is None
            else {name: [arrays[key] for key in sorted(arrays, key=int)] for name, arrays in weights.items()}
        )


class TrackedEvaluator:
    """The run's evaluator, plus what every evaluation must do: refuse non-finite weights first, and
    keep the best policy after."""

    def __init__(self, evaluator: Evaluator, agent: Any, best: BestPolicy, logger: RunLogger):
        self.evaluator, self.agent, self.best, self.logger = evaluator, agent, best, logger
        self.seconds = 0.0

    def __call__(self, policy: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        step = self.agent.env_steps
        require_finite_weights(self.agent, step)
        start = time.perf_counter()
        returns = self.evaluator(policy)
        self.seconds += time.perf_counter() - start
        self.best.consider(step, returns, self.logger.episode_count)
        return returns

    def close(self) -> None:
        self.evaluator.close()


class GreedyActing:
    """An agent's deterministic actions, as the ``Evaluator`` calls a policy. For an agent that keeps a
    state per row (a recurrent A3C) ``reset_state`` is its own, so the Evaluator keeps one row per episode."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.reset_state: Callable[[int], None] | None = getattr(agent, "reset_state", None)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return self.agent.act(observations, explore=False)


def _new_run_dir(logdir: str | Path, settings: RunSettings) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(logdir) / f"{settings.name}-{settings.seed}-{stamp}"
    run_dir, suffix = base, 1
    while True:
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:  # an earlier run, or one started in this same second: take the next suffix
            suffix += 1
            run_dir = base.with_name(f"{base.name}-{suffix}")
        except OSError as error:
            raise ConfigError(
                f"cannot create the run directory {run_dir} under --logdir {logdir}: {error.strerror}"
            ) from None


def load_run(run_dir: str | Path) -> tuple[RunSettings, dict[str, Any]]:
    """The settings and config dict saved in a run directory."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise CheckpointError(
            f"{run_dir} is not a tfrl run directory (no {RUN_FILE}); runs live under runs/ by default"
        )
    try:
        saved = json.loads(path.read_text())
        settings = RunSettings(**saved["settings"])
        settings.validate()  # a hand-edited value is refused by name, not met deep inside the loop
        return settings, saved["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from None
    except ConfigError as error:
        raise CheckpointError(f"{path} holds an invalid setting: {error}") from None


def _resumed_settings(
    run_dir: Path,
    algorithm: str | None,
    env_id: str | None,
    changes: Mapping[str, Any] | None = None,
    torso: Any = None,
) -> tuple[RunSettings, Any]:
    """The saved settings and config of ``run_dir``, checked against what the caller named.

    ``torso`` (None: the saved one) is a torso builder given again, for a run whose torso only the
    process that trained it could build (a lambda, say).

    ``changes`` are the run settings the caller gave (None: not given). Those of ``RESUMABLE_SETTINGS``
    are applied (and so recorded in run.json); any other that differs from the saved
    value is refused with the flag's name, since the checkpoint was made with the saved one.
    """
    settings, config_dict = load_run(run_dir)
    for given, saved, what in ((algorithm, settings.algorithm, "algorithm"), (env_id, settings.env_id, "env")):
        if given is not None and given != saved:
            raise ConfigError(
                f"{run_dir} is a {settings.algorithm} run on {settings.env_id}; its {what} is {saved!r}, not {given!r}"
            )
    for name, value in (changes or {}).items():
        if value is None or value == getattr(settings, name):
            continue
        if name not in RESUMABLE_SETTINGS:
            raise ConfigError(
                f"{_flag(name)} {value} cannot change on --resume: {run_dir} was trained with {name}="
                f"{getattr(settings, name)}, and its checkpoint holds state made with it (start a new run instead)"
            )
        setattr(settings, name, value)
    settings.validate()
    _, config_class = get_agent(settings.algorithm)
    if torso is not None:
        config_dict = {**config_dict, "torso": torso}
    return settings, config_class.from_saved(config_dict)


def use_intra_op_threads(threads: int) -> None:
    """Have TensorFlow split each operation over ``threads`` threads (0: leave its setting alone).

    TensorFlow takes this only before the process's first operation; afterwards a different setting
    is left as it is, with a line on stderr saying so, since the run is right either way, only slower.
    """
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if threads == 0 or threads == current:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        running = f"{current} threads per operation" if current else "its default threads per operation (one per core)"
        print(
            f"tfrl: intra_op_threads={threads} not applied: TensorFlow already runs in this process with {running} "
            "(the setting takes effect only in a process that has not run TensorFlow yet)",
            file=sys.stderr,
        )


def build_agent(settings: RunSettings, config: Any) -> Any:
    """A fresh agent for ``settings``, seeded so the same seed gives the same run."""
    agent_class, _ = get_agent(settings.algorithm)
    use_intra_op_threads(config.intra_op_threads)
    keras.utils.set_random_seed(settings.seed)
    probe = make_env(
        settings.env_id,
        discretize=settings.discretize,
        frame_stack=config.frame_stack,
        indexed_actions=True,
        env_kwargs=settings.env_kwargs,
    )
    try:
        agent = agent_class(config, probe.observation_space, probe.action_space, settings.env_id, settings.seed)
        if isinstance(agent, UpdateProducer):
            workers = f"{settings.algorithm}'s workers"
            require_importable(settings.env_id, f"{workers} make their envs in their own processes")
            require_importable_torso(config.torso, f"{workers} build their networks in their own processes")
        try:
            first, _ = probe.reset(seed=settings.seed)
        except Exception as error:  # noqa: BLE001 — a user's env may raise anything; EnvFailed reports it whole
            raise env_failure(settings.env_id, error, "on its first reset") from None
        check_observation(settings.env_id, probe.observation_space, first, "reset()")
        require_finite_from_env(settings.env_id, np.asarray(first)[None], "observation", "from reset()")
        return agent
    finally:
        probe.close()


def restore_run(run_dir: str | Path) -> tuple[RunSettings, Any, BestPolicy]:
    """``(settings, agent, best)`` of a run directory, restored from its newest complete checkpoint."""
    settings, config = _resumed_settings(Path(run_dir), None, None, None)
    agent = build_agent(settings, config)
    checkpointer = Checkpointer(Path(run_dir) / "checkpoints", agent)
    checkpointer.restore()
    best = BestPolicy(agent)
    best.load_state(checkpointer.restored_extra_state.get("best", {}))
    return settings, agent, best


def export_run(
    agent: Any,
    settings: RunSettings,
    run_dir: str | Path,
    path: str | Path,
    evaluation: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``agent``'s current weights with the metadata of the run it came from.

    ``evaluation`` describes the score of these weights (``BestPolicy.metadata`` for the best ones).
    For a run on discretised actions the export's ``action`` returns the env's real action (the grid
    row of the chosen index), so it drives the unwrapped env; ``q_values`` stay over the grid's rows.
    Likewise a ``Discrete(n, start=s)`` env's export returns ``s + index``.
    """
    probe = make_env(
        settings.env_id, env_kwargs=settings.env_kwargs
    )  # the env's own action space, which the export drives
    action_space = probe.action_space
    probe.close()
    grid, discrete = env_actions(action_space), {}
    if settings.discretize is not None:
        grid = action_grid(action_space, settings.discretize)
        discrete = {"discretize": settings.discretize, "action_grid": grid.tolist()}
    metadata = {
        "algorithm": settings.algorithm,
        "env_id": settings.env_id,
        "env_kwargs": settings.env_kwargs,
        "run_id": settings.run_id,
        "observation_space": describe_space(agent.observation_space),
        "preprocessing": preprocessing(settings.env_id, agent.config.frame_stack),
        "action_space": describe_space(action_space),
        **discrete,
        "config": agent.config.to_dict(),
        "seed": settings.seed,
        "env_steps": agent.env_steps,
        "evaluation": None if evaluation is None else dict(evaluation),
        "run_dir": str(run_dir),
    }
    return export_policy(agent, path, metadata, action_grid=grid)


def export_best(agent: Any, settings: RunSettings, run_dir: Path, path: Path, best: BestPolicy) -> Path:
    """Export the best-evaluated weights (the current ones if the run was never evaluated)."""
    with best.applied():
        return export_run(agent, settings, run_dir, path, best.metadata())


def _reward_threshold(env_id: str, env_kwargs: Mapping[str, Any]) -> float | None:
    env = make_env(env_id, env_kwargs=env_kwargs)
    try:
        return None if env.spec is None else env.spec.reward_threshold
    finally:
        env.close()


def train(
    algorithm: str | None = None,
    env: str | Callable[..., gym.Env] | None = None,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    env_check: bool = True,
    config: Any = None,
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    torso: Any = None,
    seed: int | None = None,
    total_steps: int | None = None,
    num_envs: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    checkpoint_every: int | None = None,
    stop_at_threshold: bool | None = None,
    discretize: int | None = None,
    logdir: str | Path = "runs",
    export_dir: str | Path | None = None,
    export: bool | None = None,
    export_final: bool | None = None,
    replace_export: bool | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    backend: str | None = None,
    ray_address: str | None = None,
    callbacks: Sequence[Callback] | None = None,
) -> TrainResult:
    """Train ``algorithm`` on ``env`` and export its best-evaluated policy; or continue the run in ``resume``.

    ``env`` is a gymnasium env id (``CartPole-v1``), gymnasium's ``module:EnvId`` (the module is
    imported first, so it can register its envs), or a class or function that returns an env (also
    as ``module:name``); ``env_kwargs`` are its arguments. All are recorded in run.json and the
    export, so resume, evaluate and record make the same env again. An env from outside gymnasium is
    checked once with gymnasium's env checker at the start of a new run (``env_check=False`` skips it).

    ``config`` (a Config instance) wins over ``preset`` + ``overrides``; otherwise the registry
    entry's defaults apply (``double-dqn`` is DQN with ``double=True``). ``torso`` is the networks'
    torso (see ``AgentConfig``): a name, ``module:builder``, or a function or class that returns a
    new Keras layer; it wins over the config's. A run whose torso was a builder a new process cannot
    import (a lambda, a local function, one of ``__main__``) resumes with it passed again,
    ``train(resume=RUN, torso=builder)``. ``discretize=N`` trains on
    a Box action space cut into N evenly spaced actions per dimension. Run settings left as None get
    the preset's or agent's defaults (seed 0, 20 evaluation episodes, a stop at the env's threshold).

    The policy goes to ``<export_dir>/<algorithm>-<env name>`` (``export_dir`` defaults to
    ``exports``; ``export=False`` exports nothing), or to ``…-2``, ``…-3`` where an earlier run's
    policy is: each run keeps its own export unless ``replace_export``. It is the best-evaluated
    policy unless ``export_final``. A resumed run keeps the saved settings, export place included, unless these
    arguments say otherwise: its length and cadence (``total_steps``, ``eval_every``, ``eval_episodes``,
    ``checkpoint_every``, ``stop_at_threshold``) may change and are recorded in run.json; ``seed``,
    ``num_envs``, ``discretize`` and ``env_kwargs`` may not. The export target is checked before training starts: tfrl
    replaces only an earlier tfrl export, and never one that holds ``logdir`` or the resumed run.

    If the env raises or returns a non-finite value, a worker fails, the weights diverge or the disk
    refuses a write, the run stops with one ``TfrlError`` line saying what was kept: a checkpoint where
    possible, the best policy exported, and how to resume.

    ``callbacks`` (``tfrl.Callback`` instances) run at each point of the run, may log scalars and
    may stop it cleanly (``tfrl.callbacks``); they are not saved: pass them again on resume.

    ``backend="ray"`` runs A3C's workers as Ray actors on the cluster at ``ray_address`` (``auto``: the
    one ``ray start`` made here; None: a new local one); a resumed run keeps its backend unless told.
    """
    called = time.perf_counter()
    hooks = check_callbacks(callbacks)
    given = dict(
        seed=seed,
        total_steps=total_steps,
        num_envs=num_envs,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        checkpoint_every=checkpoint_every,
        stop_at_threshold=stop_at_threshold,
        discretize=discretize,
        env_kwargs=None if env_kwargs is None else dict(env_kwargs),
    )
    env_id = None if env is None else env_reference(env)
    if resume is not None:
        run_dir = Path(resume)
        settings, config = _resumed_settings(run_dir, algorithm, env_id, given, torso)
        _apply_export_choice(settings, export_dir, export, export_final, replace_export, run_dir)
        _apply_backend_choice(settings, backend, ray_address)
        check_export_target(settings.export_path, run_dir=run_dir)
        agent = build_agent(settings, config)
    else:
        if algorithm is None or env_id is None:
            raise ConfigError("train needs an algorithm and an env (or resume=<run dir>)")
        agent_class, config_class = get_agent(algorithm)
        config = config or make_config(algorithm, preset, overrides)
        if torso is not None:
            config = config.replace(torso=torso)
        defaults = {**NEW_RUN_DEFAULTS, **run_defaults(agent_class, config_class, preset)}
        defaults["env_kwargs"] = {}  # the env's own defaults
        chosen: dict[str, Any] = {name: defaults[name] if value is None else value for name, value in given.items()}
        settings = RunSettings(algorithm=algorithm, env_id=env_id, run_id=uuid.uuid4().hex, **chosen)
        _apply_backend_choice(settings, backend, ray_address)
        settings.validate()
        _apply_export_choice(settings, export_dir, export, export_final, replace_export)
        # Before any training: a bad export target must not waste a run.
        check_export_target(settings.export_path, logdir=logdir)
        agent = build_agent(settings, config)  # refuses an unknown env or unfit spaces before any file is written
        if env_check:
            check_user_env(settings.env_id, settings.env_kwargs)
        run_dir = _new_run_dir(logdir, settings)
    with RunLock(run_dir):  # one process at a time: a second resume of a live run is refused here
        _write_run_file(run_dir, settings, config)  # on resume: what was changed on resuming is kept
        return _run(agent, settings, config, run_dir, resume is not None, progress, called, hooks)


def _run(
    agent: Any,
    settings: RunSettings,
    config: Any,
    run_dir: Path,
    resumed: bool,
    progress: bool,
    called: float,
    hooks: list[Callback],
) -> TrainResult:
    """The part of ``train`` that holds the run's lock: restore (on resume), train, export."""
    best = BestPolicy(agent)
    checkpointer = Checkpointer(run_dir / "checkpoints", agent, extra_state=lambda: {"best": best.state()})
    start_step = 0
    if resumed:
        start_step = checkpointer.restore()
        for line in checkpointer.skipped:
            print(f"tfrl: {line}", file=sys.stderr)
        best.load_state(checkpointer.restored_extra_state.get("best", {}))
        checkpoint = run_dir / "checkpoints" / f"ckpt-{start_step}"
        print(f"tfrl: resuming {run_dir} from its checkpoint at env step {start_step} ({checkpoint})", file=sys.stderr)
    logger = RunLogger(run_dir, settings.total_steps, start_step, progress)
    callbacks = Callbacks(hooks, Run(agent, settings, run_dir, best, logger.custom_scalar))
    setup_seconds = logger.start_time - called
    try:
        with _sigterm_as_interrupt(), cluster(settings.backend, settings.ray_address) as workers_at:
            _write_run_file(run_dir, settings, config, workers_at)
            if isinstance(agent, UpdateProducer):  # an agent with its own workers (A3C) produces its updates
                stream = agent.update_stream(settings, start_step, lambda line: logger.event(agent.env_steps, line))
            else:
                stream = _collected(agent, settings, start_step)
            outcome = _train_loop(agent, settings, stream, logger, checkpointer, best, start_step, callbacks)
    except KeyboardInterrupt as interrupt:
        kept = _keep_checkpoint(checkpointer, agent)
        logger.close()
        why = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"\n{why} at step {agent.env_steps}; {kept}; continue with: tfrl train --resume {run_dir}")
        raise
    except (TrainingDiverged, WorkerError, EnvFailed, StorageError, CallbackFailed) as error:
        logger.close()
        raise type(error)(_stopped_message(error, run_dir, checkpointer, agent, settings, best)) from None
    logger.close()

    export_path = _final_export_path(settings, run_dir, config)
    if export_path is not None:
        try:
            if settings.export_final:
                last_return = logger.last_evaluation  # this run's last evaluation, or the resumed run's
                last = None if last_return is None else {"policy": "final", "mean_return": last_return}
                export_run(agent, settings, run_dir, export_path, last)
            else:
                export_best(agent, settings, run_dir, export_path, best)
        except OSError as error:
            raise StorageError(
                f"cannot write the export {export_path}: {error.strerror or error}; the run and its checkpoint "
                f"are complete in {run_dir}: export it once there is room with tfrl export {run_dir}"
            ) from None
    callbacks.run.export_path = export_path
    callbacks.notify("on_training_end")
    return TrainResult(
        run_dir=run_dir,
        export_path=export_path,
        agent=agent,
        best_return=best.score,
        best_step=best.step,
        export_final=settings.export_final,
        best=best,
        setup_seconds=setup_seconds,
        **outcome,
    )


def _another_runs_export(path: Path, settings: RunSettings, run_dir: Path | None) -> bool:
    """Whether ``path`` holds the tfrl export of another run than this one (``settings.run_id``; for an
    export made before run ids, its run directory): a name to pass over. What is not an export (a
    file, your data) is not passed over: ``check_export_target`` then refuses it by name."""
    try:
        metadata = read_metadata(path)
    except ExportError:
        return False
    if "run_id" in metadata:
        return metadata["run_id"] != settings.run_id
    recorded = metadata.get("run_dir")
    return run_dir is None or recorded is None or Path(recorded).resolve() != run_dir.resolve()


def run_defaults(agent_class: Any, config_class: Any, preset: str) -> dict[str, int]:
    """The run settings a run of ``preset`` gets unless told otherwise: the agent's, then the preset's."""
    return {**agent_class.run_defaults, **config_class.PRESET_RUN_DEFAULTS.get(preset, {})}


def _apply_export_choice(
    settings: RunSettings,
    export_dir: str | Path | None,
    export: bool | None,
    export_final: bool | None,
    replace_export: bool | None = None,
    run_dir: Path | None = None,
) -> None:
    """Settle where (and whether, and which policy) the run exports: explicit arguments win over saved
    ones; then the export's name (``RunSettings.choose_export_name``)."""
    if export_dir is not None and str(export_dir) != settings.export_dir:
        settings.export_dir, settings.export_name = str(export_dir), None
    if export is False:
        settings.export_dir = None
    elif export is True and settings.export_dir is None:
        settings.export_dir = str(export_dir or DEFAULT_EXPORT_DIR)
    if export_final is not None:
        settings.export_final = export_final
    if replace_export is not None:
        settings.replace_export = replace_export
    settings.choose_export_name(run_dir)


def _final_export_path(settings: RunSettings, run_dir: Path, config: Any) -> Path | None:
    """Where the run exports now: its chosen name, or the next free one if another run took it
    meanwhile (recorded in run.json, so a resume exports to the same place)."""
    chosen = settings.export_name
    settings.choose_export_name(run_dir)
    if settings.export_name != chosen:
        _write_run_file(run_dir, settings, config)
    return settings.export_path


def _apply_backend_choice(settings: RunSettings, backend: str | None, ray_address: str | None) -> None:
    """Settle where workers run (explicit arguments win over saved ones), and refuse what cannot work
    before any file is written: a backend for an agent without workers, Ray missing, an address with
    no cluster behind it."""
    if backend is not None:
        settings.backend = backend
    if ray_address is not None:
        settings.ray_address = ray_address
    agent_class, _ = get_agent(settings.algorithm)
    if settings.backend != "process" and not hasattr(agent_class, "update_stream"):
        raise ConfigError(
            f"--backend {settings.backend} runs the workers of A3C (a3c, a3c-rnn); {settings.algorithm} trains "
            "in one process, so leave --backend out"
        )
    if settings.ray_address is not None and settings.backend != "ray":
        raise ConfigError(f"--ray-address {settings.ray_address} needs --backend ray")
    check_backend(settings.backend, settings.ray_address)


def _write_run_file(
    run_dir: Path, settings: RunSettings, config: Any, workers_at: Mapping[str, Any] | None = None
) -> None:
    """``run.json``: the settings and config to rebuild the run from, and where its workers ran last
    (backend, cluster address, nodes, CPUs), written once the run has connected to them."""
    record = {
        "settings": dataclasses.asdict(settings),
        "config": config.to_dict(),
        # For readers: config.frame_stack and the env id are what rebuild it.
        "preprocessing": preprocessing(settings.env_id, config.frame_stack),
        "tfrl_version": __version__,
    }
    if workers_at is not None:
        record["workers"] = dict(workers_at)
    try:
        text = json.dumps(record, indent=2, allow_nan=False)  # valid JSON for any reader: no NaN, no Infinity
    except ValueError:
        raise ConfigError(f"the run's settings or config hold NaN or infinity: {record}") from None
    replace_text(run_dir / RUN_FILE, text)


def _keep_checkpoint(checkpointer: Checkpointer, agent: Any, save: bool = True) -> str:
    """Checkpoint on the way out where the weights are finite and the disk takes it; says what was kept.

    ``save=False`` (a diverged run) writes nothing: the last checkpoint on disk is the one to keep."""
    step = agent.env_steps
    if not save:
        failed = "the weights diverged, so no checkpoint was written now"
    elif not networks_finite(agent):
        failed = "the weights are not finite, so no checkpoint was written now"
    else:
        try:
            checkpointer.save(step)
            return f"a checkpoint at step {step} is in {checkpointer.directory.parent}"
        except StorageError as error:
            failed = f"the checkpoint at step {step} could not be written ({error})"
    steps = checkpointer.steps()
    older = f"the last complete checkpoint is at step {steps[0]}" if steps else "no checkpoint is on disk"
    return f"{failed}; {older}"


def _stopped_message(
    error: TfrlError,
    run_dir: Path,
    checkpointer: Checkpointer,
    agent: Any,
    settings: RunSettings,
    best: BestPolicy,
) -> str:
    """Why the run stopped, what was kept, the best policy exported so the run's good part is not lost,
    and (unless the weights diverged, which a resume would repeat) how to continue."""
    first, *details = str(error).split("\n")
    kept = _keep_checkpoint(checkpointer, agent, save=not isinstance(error, TrainingDiverged))
    exported = _export_on_stop(agent, settings, run_dir, best)
    resume = "" if isinstance(error, TrainingDiverged) else f"; continue with: tfrl train --resume {run_dir}"
    return "\n".join([f"{first}; {kept}; {exported}{resume}", *details])


def _export_on_stop(agent: Any, settings: RunSettings, run_dir: Path, best: BestPolicy) -> str:
    """Export the best policy of a run that is stopping on an error; says what became of it. Nothing
    here may raise: a second failure (the disk that stopped the run, an export place taken meanwhile)
    is reported beside the first, never instead of it."""
    if best.weights is None:
        return "nothing was exported (no finite policy was evaluated)"
    policy = f"the best policy (return {best.score:.1f} at step {best.step})"
    try:
        export_path = _final_export_path(settings, run_dir, agent.config)
        if export_path is None:
            return f"{policy} is in the checkpoint (this run exports nothing; tfrl export {run_dir} writes it)"
        export_best(agent, settings, run_dir, export_path, best)
    except (OSError, TfrlError) as failure:
        return f"{policy} could not be exported ({failure}); tfrl export {run_dir} retries it"
    return f"{policy} was exported to {export_path}"


def _run_evaluator(settings: RunSettings, config: Any) -> Evaluator:
    seed = settings.seed + EVALUATION_SEED_OFFSET
    return Evaluator(
        settings.env_id,
        settings.eval_episodes,
        seed,
        settings.discretize,
        config.frame_stack,
        indexed_actions=True,
        env_kwargs=settings.env_kwargs,
    )


Update = tuple[int, list[tuple[float, int]], Mapping[str, float] | None]


def _collected(agent: Any, settings: RunSettings, start_step: int) -> Generator[Update, None, None]:
    """Step all vector envs at once for ``agent``; the agent decides when to learn from what it observes.

    One stream serves every agent without workers: off-policy agents store transitions and train
    every few steps, on-policy agents gather rollouts or whole episodes and update when one is complete.
    """
    envs = make_vector_env(
        settings.env_id,
        settings.num_envs,
        discretize=settings.discretize,
        training=True,
        frame_stack=agent.config.frame_stack,
        indexed_actions=True,
        env_kwargs=settings.env_kwargs,
    )
    env_id = settings.env_id
    try:
        # A resumed run starts fresh episodes: env states are not checkpointed, so use new seeds.
        try:
            observations, _ = envs.reset(seed=settings.seed + start_step)
        except Exception as error:  # noqa: BLE001 — a user's env may raise anything; EnvFailed reports it whole
            raise env_failure(env_id, error, f"resetting the training envs at env step {start_step}") from None
        episode_returns = np.zeros(settings.num_envs)
        episode_lengths = np.zeros(settings.num_envs, np.int64)
        while True:
            actions = agent.act(observations, explore=True)
            try:
                next_observations, rewards, terminated, truncated, info = envs.step(actions)
            except Exception as error:  # noqa: BLE001 — as above
                raise env_failure(env_id, error, f"in a training step after env step {agent.env_steps}") from None
            where = f"in a training step after env step {agent.env_steps}"
            require_finite_from_env(env_id, rewards, "reward", where)  # before the agent learns from it
            require_finite_from_env(env_id, next_observations, "observation", where)
            done = terminated | truncated
            finished = np.flatnonzero(done)
            real_next = final_observations(next_observations, done, info)
            if len(finished):
                require_finite_from_env(env_id, real_next[finished], "observation", f"ending an episode, {where}")
            metrics = agent.observe(observations, actions, rewards, real_next, terminated, truncated)
            observations = next_observations
            episode_returns += rewards
            episode_lengths += 1
            episodes = [(float(episode_returns[index]), int(episode_lengths[index])) for index in finished]
            episode_returns[finished], episode_lengths[finished] = 0.0, 0
            yield agent.env_steps, episodes, metrics
    finally:
        envs.close()


def _train_loop(
    agent: Any,
    settings: RunSettings,
    stream: Generator[Update, None, None],
    logger: RunLogger,
    checkpointer: Checkpointer,
    best: BestPolicy,
    start_step: int,
    callbacks: Callbacks,
) -> dict:
    """Consume ``stream`` until ``total_steps``, the threshold or a callback's stop, with the one
    cadence of every run: episodes logged as they finish, training metrics (checked finite) at most
    once per ``METRICS_EVERY`` env steps, evaluations every ``eval_every`` (and at the end; best-policy
    tracking in ``TrackedEvaluator``), checkpoints every ``checkpoint_every`` and a last one at the
    end; each followed by its callback hook (``tfrl.callbacks``).

    Returns env_steps, solved, stopped_by, final_return, wall_seconds and train_steps_per_second
    (evaluation time excluded). The stream is closed on the way out, which stops whatever workers it runs.
    """
    threshold = _reward_threshold(settings.env_id, settings.env_kwargs) if settings.stop_at_threshold else None
    evaluator = TrackedEvaluator(_run_evaluator(settings, agent.config), agent, best, logger)
    greedy = GreedyActing(agent)
    run = callbacks.run
    step = start_step
    next_eval = (step // settings.eval_every + 1) * settings.eval_every
    next_checkpoint = (step // settings.checkpoint_every + 1) * settings.checkpoint_every
    next_metrics = next_progress = step
    final_return, solved, evaluated_at, checkpointed_at = None, False, None, None

    def evaluate_now() -> None:
        nonlocal final_return, evaluated_at
        returns = evaluator(greedy)
        logger.evaluation(step, returns)
        final_return, evaluated_at = float(np.mean(returns)), step
        if callbacks:
            callbacks.notify("on_evaluation", returns, best.step == step)

    start = time.perf_counter()
    try:
        callbacks.notify("on_training_start")
        while step < settings.total_steps and run.stop_reason is None:
            step, episodes, metrics = next(stream)
            run.step = step
            for (
                episode_return,
                length,
            ) in episodes:  # finite rewards can still sum to infinity; a worker's are unchecked
                require_finite_from_env(settings.env_id, episode_return, "episode return", f"by env step {step}")
                logger.episode(step, episode_return, length)
                if callbacks:
                    callbacks.notify("on_episode", episode_return, length)
            if metrics is not None:
                require_finite_metrics(step, metrics)
                if step >= next_metrics:
                    logger.metrics(step, metrics)
                    next_metrics = step + METRICS_EVERY
            if callbacks:
                callbacks.notify("on_update", metrics)
            if step >= next_eval or step >= settings.total_steps:
                evaluate_now()
                next_eval = (step // settings.eval_every + 1) * settings.eval_every
                if threshold is not None and final_return is not None and final_return >= threshold:
                    solved = True
                    break
            if step >= next_checkpoint:
                checkpointer.save(step)
                logger.flush()
                checkpointed_at = step
                callbacks.notify("on_checkpoint", step)
                next_checkpoint = (step // settings.checkpoint_every + 1) * settings.checkpoint_every
            if step >= next_progress:
                logger.progress(step)
                next_progress = step + PROGRESS_EVERY
        if run.stop_reason is not None and evaluated_at != step:
            evaluate_now()  # a stop between evaluations: the policy it ends with is scored too
    finally:
        stream.close()
        evaluator.close()
    if checkpointed_at != step:
        checkpointer.save(step)
        callbacks.notify("on_checkpoint", step)
    logger.progress(step)
    wall = time.perf_counter() - start
    return {
        "env_steps": step,
        "solved": solved,
        "stopped_by": run.stop_reason,
        "final_return": final_return,
        "wall_seconds": wall,
        "train_steps_per_second": (step - start_step) / max(wall - evaluator.seconds, 1e-9),
    }
