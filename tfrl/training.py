"""Training loops, evaluation, and the run directory that ties logging, checkpoints and export together.

A run lives in ``runs/<algo>-<env>-<seed>-<time>/``: ``run.json`` (what to rebuild it from),
``episodes.jsonl``, ``evaluations.jsonl``, ``tensorboard/`` and ``checkpoints/``. Training stops at
``total_steps`` or as soon as the mean evaluation return reaches the env's ``reward_threshold``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfrl import __version__
from tfrl.agents import get_agent, make_config
from tfrl.agents.config import AgentConfig
from tfrl.checkpoint import Checkpointer
from tfrl.envs import action_grid, describe_space, final_observations, make_env, make_vector_env
from tfrl.errors import CheckpointError, ConfigError
from tfrl.export import export_policy
from tfrl.logger import RunLogger

RUN_FILE = "run.json"
METRICS_EVERY = 1_000
EVALUATION_SEED_OFFSET = 1_000_000  # evaluation episodes never share seeds with training envs


class Evaluator:
    """Runs ``episodes`` seeded episodes side by side, acting for all of them in one batched call.

    ``discretize`` wraps a Box action space as in training, for a policy that returns action indices.
    """

    def __init__(self, env_id: str, episodes: int = 20, seed: int = 0, discretize: int | None = None) -> None:
        if episodes < 1:
            raise ConfigError(f"evaluation episodes must be at least 1, got {episodes}")
        self.envs = [make_env(env_id, discretize=discretize) for _ in range(episodes)]
        self.seed = seed

    def __call__(self, policy: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Undiscounted return of each episode under ``policy`` (a batch of observations → actions).

        A stateful (recurrent) policy has ``reset_state(batch_size)``: it is reset first and then
        always gets every episode's row, finished ones too, so row ``i`` of its state stays episode ``i``'s.
        """
        observations = np.stack([env.reset(seed=self.seed + index)[0] for index, env in enumerate(self.envs)])
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
                observation, reward, terminated, truncated, _ = self.envs[index].step(action)
                observations[index] = observation
                returns[index] += reward
                active[index] = not (terminated or truncated)
        return returns

    def close(self) -> None:
        for env in self.envs:
            env.close()


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int = 20,
    seed: int = 0,
    discretize: int | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` deterministic, seeded episodes of ``policy`` on ``env_id``."""
    evaluator = Evaluator(env_id, episodes, seed, discretize)
    try:
        return evaluator(policy)
    finally:
        evaluator.close()


@dataclasses.dataclass
class RunSettings:
    """Everything that defines a run besides the agent's config; saved in ``run.json``."""

    algorithm: str
    env_id: str
    seed: int = 0
    total_steps: int = 100_000
    num_envs: int = 4
    eval_every: int = 2_500
    eval_episodes: int = 20
    checkpoint_every: int = 10_000
    stop_at_threshold: bool = True
    discretize: int | None = None  # N evenly spaced actions per dimension of a Box action space

    def validate(self) -> None:
        for name in ("total_steps", "num_envs", "eval_every", "eval_episodes", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.discretize is not None and self.discretize < 2:
            raise ConfigError(f"discretize must be at least 2 actions, got {self.discretize}")


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: where things were written and how the run ended."""

    run_dir: Path
    export_path: Path | None
    env_steps: int
    solved: bool
    final_return: float | None
    wall_seconds: float
    train_steps_per_second: float
    agent: Any = dataclasses.field(repr=False)


def _new_run_dir(logdir: str | Path, settings: RunSettings) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(logdir) / f"{settings.algorithm}-{settings.env_id}-{settings.seed}-{stamp}"
    run_dir, suffix = base, 1
    while run_dir.exists():
        suffix += 1
        run_dir = base.with_name(f"{base.name}-{suffix}")
    run_dir.mkdir(parents=True)
    return run_dir


def load_run(run_dir: str | Path) -> tuple[RunSettings, dict[str, Any]]:
    """The settings and config dict saved in a run directory."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise CheckpointError(
            f"{run_dir} is not a tfrl run directory (no {RUN_FILE}); runs live under runs/ by default"
        )
    try:
        saved = json.loads(path.read_text())
        return RunSettings(**saved["settings"]), saved["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from None


def _resumed_settings(
    run_dir: Path, algorithm: str | None, env_id: str | None, total_steps: int | None
) -> tuple[RunSettings, AgentConfig]:
    """The saved settings and config of ``run_dir``, checked against what the caller named."""
    settings, config_dict = load_run(run_dir)
    for given, saved, what in ((algorithm, settings.algorithm, "algorithm"), (env_id, settings.env_id, "env")):
        if given is not None and given != saved:
            raise ConfigError(
                f"{run_dir} is a {settings.algorithm} run on {settings.env_id}; its {what} is {saved!r}, not {given!r}"
            )
    if total_steps is not None:
        settings.total_steps = total_steps
    _, config_class = get_agent(settings.algorithm)
    return settings, config_class().replace(**config_dict)


def build_agent(settings: RunSettings, config: AgentConfig) -> Any:
    """A fresh agent for ``settings``, seeded so the same seed gives the same run."""
    agent_class, _ = get_agent(settings.algorithm)
    keras.utils.set_random_seed(settings.seed)
    probe = make_env(settings.env_id, discretize=settings.discretize)
    try:
        return agent_class(config, probe.observation_space, probe.action_space, settings.env_id, settings.seed)
    finally:
        probe.close()


def restore_run(run_dir: str | Path) -> tuple[RunSettings, Any]:
    """``(settings, agent)`` of a run directory, the agent restored from its newest checkpoint."""
    settings, config = _resumed_settings(Path(run_dir), None, None, None)
    agent = build_agent(settings, config)
    Checkpointer(Path(run_dir) / "checkpoints", agent).restore()
    return settings, agent


def export_run(
    agent: Any, settings: RunSettings, run_dir: str | Path, path: str | Path, final_return: float | None
) -> Path:
    """Export ``agent``'s policy with the metadata of the run it came from.

    For a run on discretised actions the export's ``action`` returns the env's real action (the grid
    row of the chosen index), so it drives the unwrapped env; ``q_values`` stay over the grid's rows.
    """
    action_space, grid, discrete = agent.action_space, None, {}
    if settings.discretize is not None:
        probe = make_env(settings.env_id)
        action_space = probe.action_space
        probe.close()
        grid = action_grid(action_space, settings.discretize)
        discrete = {"discretize": settings.discretize, "action_grid": grid.tolist()}
    return export_policy(
        agent,
        path,
        {
            "algorithm": settings.algorithm,
            "env_id": settings.env_id,
            "observation_space": describe_space(agent.observation_space),
            "action_space": describe_space(action_space),
            **discrete,
            "config": agent.config.to_dict(),
            "seed": settings.seed,
            "env_steps": agent.env_steps,
            "evaluation": None
            if final_return is None
            else {"mean_return": final_return, "episodes": settings.eval_episodes},
            "run_dir": str(run_dir),
        },
        action_grid=grid,
    )


def _reward_threshold(env_id: str) -> float | None:
    env = make_env(env_id)
    try:
        return None if env.spec is None else env.spec.reward_threshold
    finally:
        env.close()


def train(
    algorithm: str | None = None,
    env_id: str | None = None,
    *,
    config: AgentConfig | None = None,
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    total_steps: int | None = None,
    num_envs: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 20,
    checkpoint_every: int | None = None,
    stop_at_threshold: bool = True,
    discretize: int | None = None,
    logdir: str | Path = "runs",
    export_dir: str | Path | None = "saved_models",
    resume: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``algorithm`` on ``env_id`` and export the policy; or continue the run in ``resume``.

    ``config`` (a Config instance) wins over ``preset`` + ``overrides``; otherwise the registry
    entry's defaults apply (``double-dqn`` is DQN with ``double=True``). ``discretize=N`` trains on
    a Box action space cut into N evenly spaced actions per dimension. With ``resume``, the saved
    settings and config are used; ``total_steps`` may still be raised to train longer.
    """
    if resume is not None:
        run_dir = Path(resume)
        settings, config = _resumed_settings(run_dir, algorithm, env_id, total_steps)
        if discretize is not None and discretize != settings.discretize:
            raise ConfigError(f"{run_dir} was trained with discretize={settings.discretize}, not {discretize}")
        agent = build_agent(settings, config)
    else:
        if algorithm is None or env_id is None:
            raise ConfigError("train needs an algorithm and an env id (or resume=<run dir>)")
        agent_class, _ = get_agent(algorithm)
        config = config or make_config(algorithm, preset, overrides)
        given = {
            "total_steps": total_steps,
            "num_envs": num_envs,
            "eval_every": eval_every,
            "checkpoint_every": checkpoint_every,
        }
        settings = RunSettings(
            algorithm=algorithm,
            env_id=env_id,
            seed=seed,
            eval_episodes=eval_episodes,
            stop_at_threshold=stop_at_threshold,
            discretize=discretize,
            **{name: agent_class.run_defaults[name] if value is None else value for name, value in given.items()},
        )
        settings.validate()
        agent = build_agent(settings, config)  # refuses an unknown env or unfit spaces before any file is written
        run_dir = _new_run_dir(logdir, settings)
        (run_dir / RUN_FILE).write_text(
            json.dumps(
                {"settings": dataclasses.asdict(settings), "config": config.to_dict(), "tfrl_version": __version__},
                indent=2,
            )
        )

    checkpointer = Checkpointer(run_dir / "checkpoints", agent)
    start_step = checkpointer.restore() if resume is not None else 0
    logger = RunLogger(run_dir, settings.total_steps, start_step, progress)
    try:
        loop = _agent_runner if hasattr(agent, "run") else _collect_loop
        outcome = loop(agent, settings, logger, checkpointer, start_step)
    except KeyboardInterrupt:
        checkpointer.save(agent.env_steps)
        logger.close()
        print(f"\ninterrupted at step {agent.env_steps}; continue with: tfrl train --resume {run_dir}")
        raise
    logger.close()

    export_path = None
    if export_dir is not None:
        export_path = export_run(
            agent,
            settings,
            run_dir,
            Path(export_dir) / f"{settings.algorithm}-{settings.env_id}",
            outcome["final_return"],
        )
    return TrainResult(run_dir=run_dir, export_path=export_path, agent=agent, **outcome)


def _agent_runner(
    agent: Any, settings: RunSettings, logger: RunLogger, checkpointer: Checkpointer, start_step: int
) -> dict:
    """For an agent that brings its own runner (A3C's worker processes): the same evaluator, threshold,
    logger and checkpointer as ``_collect_loop``, and the same outcome keys back."""
    threshold = _reward_threshold(settings.env_id) if settings.stop_at_threshold else None
    evaluator = Evaluator(
        settings.env_id, settings.eval_episodes, settings.seed + EVALUATION_SEED_OFFSET, settings.discretize
    )
    try:
        return agent.run(settings, logger, checkpointer, evaluator, start_step, threshold)
    finally:
        evaluator.close()


def _collect_loop(
    agent: Any, settings: RunSettings, logger: RunLogger, checkpointer: Checkpointer, start_step: int
) -> dict:
    """Step all vector envs at once; the agent decides when to learn from what it observes.

    One loop serves every agent: off-policy agents store transitions and train every few steps,
    on-policy agents gather rollouts or whole episodes and update when one is complete.
    """
    threshold = _reward_threshold(settings.env_id) if settings.stop_at_threshold else None
    envs = make_vector_env(settings.env_id, settings.num_envs, discretize=settings.discretize)
    evaluator = Evaluator(
        settings.env_id, settings.eval_episodes, settings.seed + EVALUATION_SEED_OFFSET, settings.discretize
    )
    # A resumed run starts fresh episodes: env states are not checkpointed, so use new seeds.
    observations, _ = envs.reset(seed=settings.seed + start_step)
    episode_returns = np.zeros(settings.num_envs)
    episode_lengths = np.zeros(settings.num_envs, np.int64)
    step = start_step
    next_eval = (step // settings.eval_every + 1) * settings.eval_every
    next_checkpoint = (step // settings.checkpoint_every + 1) * settings.checkpoint_every
    next_metrics = step  # training metrics go to TensorBoard at most once per METRICS_EVERY env steps
    final_return, solved, eval_seconds = None, False, 0.0
    start = time.perf_counter()
    try:
        while step < settings.total_steps:
            actions = agent.act(observations, explore=True)
            next_observations, rewards, terminated, truncated, info = envs.step(actions)
            done = terminated | truncated
            metrics = agent.observe(
                observations, actions, rewards, final_observations(next_observations, done, info), terminated, truncated
            )
            observations = next_observations
            step = agent.env_steps
            episode_returns += rewards
            episode_lengths += 1
            for index in np.flatnonzero(done):
                logger.episode(step, episode_returns[index], episode_lengths[index])
                episode_returns[index], episode_lengths[index] = 0.0, 0
            if metrics is not None and step >= next_metrics:
                logger.metrics(step, metrics)
                next_metrics = step + METRICS_EVERY
            if step >= next_eval or step >= settings.total_steps:
                eval_start = time.perf_counter()
                returns = evaluator(lambda batch: agent.act(batch, explore=False))
                eval_seconds += time.perf_counter() - eval_start
                logger.evaluation(step, returns)
                final_return = float(np.mean(returns))
                next_eval += settings.eval_every
                if threshold is not None and final_return >= threshold:
                    solved = True
                    break
            if step >= next_checkpoint:
                checkpointer.save(step)
                logger.flush()
                next_checkpoint += settings.checkpoint_every
            if step % 256 < settings.num_envs:
                logger.progress(step)
    finally:
        envs.close()
        evaluator.close()
    checkpointer.save(step)
    logger.progress(step)
    wall = time.perf_counter() - start
    return {
        "env_steps": step,
        "solved": solved,
        "final_return": final_return,
        "wall_seconds": wall,
        "train_steps_per_second": (step - start_step) / max(wall - eval_seconds, 1e-9),
    }
