"""The ``tfrl`` command: train, evaluate, export, list.

    tfrl train dqn --env CartPole-v1 --seed 0
    tfrl train dqn --env CartPole-v1 --set learning_rate=1e-3 --set batch_size=128
    tfrl train --resume runs/dqn-CartPole-v1-0-20260101-120000
    tfrl train a3c --env CartPole-v1 --backend ray --ray-address auto
    tfrl evaluate exports/dqn-CartPole-v1 --episodes 20
    tfrl export runs/<run> --out exports/my-policy
    tfrl record saved_models/dqn-CartPole-v1 --out cartpole.gif
    tfrl enjoy saved_models/dqn-CartPole-v1
    tfrl plot runs/<run>
    tfrl list

Bad input (an unknown env, a bad config value, a path that is not an export) prints one line
``tfrl: error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfrl.errors import ConfigError, TfrlError


def parse_overrides(pairs: Sequence[str], flag: str = "--set", example: str = "learning_rate=1e-3") -> dict[str, str]:
    """``["key=value", ...]`` → ``{"key": "value"}``; the config converts each value to its field's type."""
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE (e.g. {example}), got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``--env-kwargs`` pairs → the env's keyword arguments. An env declares no types, so each value is
    read as a JSON value (``0.5``, ``3``, ``true``, ``null``, ``[1, 2]``, ``"text"``; also Python's
    ``True``/``False``/``None``), and anything else is a string: ``target=0.5`` is a float,
    ``mode=hard`` the string ``"hard"``."""
    python_words = {"True": True, "False": False, "None": None}
    typed: dict[str, Any] = {}
    for key, text in parse_overrides(pairs, "--env-kwargs", "target=0.5").items():
        try:
            typed[key] = python_words[text] if text in python_words else json.loads(text)
        except json.JSONDecodeError:
            typed[key] = text
    return typed


def read_config_file(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config fields and env keyword arguments from a TOML file: config fields as top-level
    ``key = value`` pairs or a ``[config]`` table, the env's arguments as an ``[env_kwargs]`` table."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    env_kwargs = data.pop("env_kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise ConfigError(f"config file {path}: env_kwargs must be a table ([env_kwargs]), got {env_kwargs!r}")
    return data.get("config", data), env_kwargs


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrl", description="Train, evaluate and export RL policies (TensorFlow 2 / Keras 3)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an agent, checkpoint it and export its policy")
    train.add_argument("algorithm", nargs="?", help="algorithm name (see tfrl list); optional with --resume")
    train.add_argument(
        "--env",
        dest="env_id",
        help="gymnasium env id (CartPole-v1), module:EnvId (the module registers it), or module:factory",
    )
    train.add_argument(
        "--env-kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument of the env (repeatable; JSON values, else strings), e.g. --env-kwargs target=0.5",
    )
    train.add_argument(
        "--no-env-check", action="store_true", help="skip gymnasium's env checker on an env from outside gymnasium"
    )
    train.add_argument("--preset", default="default", help="named hyperparameter preset (see tfrl list)")
    train.add_argument("--config", help="TOML file of config fields, applied over the preset")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field (repeatable), e.g. --set learning_rate=1e-3",
    )
    train.add_argument("--steps", type=int, help="total env steps (default: the algorithm's)")
    train.add_argument("--seed", type=int, help="the run's seed (default: 0)")
    train.add_argument("--num-envs", type=int, help="vector envs acting in parallel (default: the preset's)")
    train.add_argument("--eval-every", type=int, help="env steps between evaluations")
    train.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default: 20)")
    train.add_argument("--checkpoint-every", type=int, help="env steps between checkpoints")
    train.add_argument(
        "--no-early-stop", action="store_true", help="keep training after reaching the env's reward threshold"
    )
    train.add_argument(
        "--discretize",
        type=int,
        metavar="N",
        help="cut a Box action space into N evenly spaced actions per dimension (e.g. Pendulum for DQN)",
    )
    train.add_argument("--logdir", default="runs", help="where run directories are created (default: runs)")
    train.add_argument(
        "--export-dir",
        help="where the policy is exported (default: exports; a resumed run keeps its own)",
    )
    train.add_argument("--no-export", action="store_true", help="do not export the policy at the end")
    train.add_argument(
        "--replace-export",
        action="store_true",
        help="export to EXPORT_DIR/<algo>-<env>, replacing the tfrl export there (default: keep it and "
        "export this run's policy beside it, as <algo>-<env>-2, -3, ...)",
    )
    train.add_argument(
        "--export-final",
        action="store_true",
        help="export the last weights instead of the best-evaluated ones",
    )
    train.add_argument(
        "--backend",
        choices=("process", "ray"),
        help="where A3C's workers run: processes on this machine (default) or Ray actors (needs tfrl[ray])",
    )
    train.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="the Ray cluster for --backend ray: HOST:PORT, ray://HOST:PORT or 'auto' (the one `ray start` made "
        "here); default: a new local one on 127.0.0.1",
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="run an exported policy for some episodes")
    evaluate.add_argument("path", help="an exported policy directory")
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--env", dest="env_id", help="env id (default: the one it was trained on)")
    evaluate.add_argument(
        "--env-kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the env's arguments (default: those it was trained with, unless --env names another env)",
    )

    export = commands.add_parser("export", help="export the best-evaluated policy of a run's newest checkpoint")
    export.add_argument("run_dir")
    export.add_argument("--out", help="export directory (default: the run's export place, exports/<algo>-<env>)")
    export.add_argument("--final", action="store_true", help="export the checkpoint's last weights, not the best ones")

    plot = commands.add_parser("plot", help="draw a run's learning curves to a PNG (needs tfrl[plot])")
    plot.add_argument("run_dir")
    plot.add_argument("--out", help="PNG path (default: <run_dir>/learning_curve.png)")

    recorder = commands.add_parser("record", help="render episodes of an exported policy to a GIF or MP4")
    recorder.add_argument("path", help="an exported policy directory")
    recorder.add_argument("--out", required=True, help="the video file, .gif or .mp4 (needs tfrl[record])")
    recorder.add_argument("--episodes", type=int, default=1)
    recorder.add_argument("--seed", type=int, default=0)
    recorder.add_argument("--frame-skip", type=int, default=1, help="keep every N-th frame")
    recorder.add_argument("--fps", type=int, default=30)
    recorder.add_argument("--scale", type=int, default=1, help="shrink frames by this integer factor")
    recorder.add_argument("--max-frames", type=int, help="stop adding frames after this many")

    enjoy = commands.add_parser("enjoy", help="watch an exported policy play in a window")
    enjoy.add_argument("path", help="an exported policy directory")
    enjoy.add_argument("--episodes", type=int, default=1)
    enjoy.add_argument("--seed", type=int, default=0)

    listing = commands.add_parser("list", help="algorithms and presets; with an algorithm, its hyperparameters")
    listing.add_argument("algorithm", nargs="?", help="show this algorithm's hyperparameters under every preset")
    return parser


def _train(args: argparse.Namespace) -> int:
    from tfrl.training import train

    overrides, env_kwargs = read_config_file(args.config) if args.config else ({}, {})
    overrides.update(parse_overrides(args.overrides))
    env_kwargs.update(parse_env_kwargs(args.env_kwargs))
    if args.resume is None and (args.algorithm is None or args.env_id is None):
        raise ConfigError(
            "train needs an algorithm and --env (e.g. tfrl train dqn --env CartPole-v1), or --resume RUN_DIR"
        )
    if args.resume is not None and (overrides or args.preset != "default" or args.discretize is not None):
        raise ConfigError(
            "--resume continues a run with its saved config; --set, --config, --preset and --discretize "
            "cannot change it"
        )
    if args.resume is None and args.preset == "default":
        note_tuned_presets(args.algorithm, args.env_id)
    result = train(
        args.algorithm,
        args.env_id,
        env_kwargs=env_kwargs or None,
        env_check=not args.no_env_check,
        preset=args.preset,
        overrides=overrides,
        seed=args.seed,
        total_steps=args.steps,
        num_envs=args.num_envs,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        checkpoint_every=args.checkpoint_every,
        stop_at_threshold=False if args.no_early_stop else None,
        discretize=args.discretize,
        logdir=args.logdir,
        export_dir=args.export_dir,
        export=False if args.no_export else None,
        export_final=True if args.export_final else None,
        replace_export=True if args.replace_export else None,
        resume=args.resume,
        progress=not args.no_progress,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    status = "solved" if result.solved else "finished"
    score = "n/a" if result.final_return is None else f"{result.final_return:.1f}"
    print(
        f"{status} after {result.env_steps} env steps in {result.wall_seconds:.1f}s "
        f"({result.train_steps_per_second:.0f} training steps/s); evaluation return {score}"
    )
    if result.best_return is not None:
        print(f"best evaluation return {result.best_return:.1f} at env step {result.best_step}")
    print(f"run: {result.run_dir}")
    if result.export_path is not None:
        which = "last" if result.export_final else "best-evaluated"
        print(f"policy ({which}, {describe_export(result.export_path)}): {result.export_path}")
        for other in exports_beside(result.export_path):
            print(f"kept beside it: {other} ({describe_export(other)})")
    return 0


def note_tuned_presets(algorithm: str, env_id: str) -> None:
    """Say on stderr when the env has a preset of this algorithm tuned for it and the run takes the
    defaults instead: the defaults learn most envs, but some (MountainCar's sparse reward) need their own."""
    from tfrl.agents import get_agent

    tuned = get_agent(algorithm)[1].presets_for(env_id)
    if tuned:
        presets = " or ".join(f"--preset {preset}" for preset in tuned)
        print(
            f"note: {algorithm} has a preset tuned for {env_id} ({presets}); this run takes the defaults",
            file=sys.stderr,
        )


def exports_beside(path: Path) -> list[Path]:
    """The other exports of the same algorithm and env in ``path``'s folder (``dqn-CartPole-v1``,
    ``dqn-CartPole-v1-2``, …), which this run left as they were."""
    from tfrl.export import is_export

    stem = re.sub(r"-\d+$", "", path.name)
    pattern = re.compile(rf"{re.escape(stem)}(-\d+)?")
    return sorted(
        other for other in path.parent.iterdir() if other != path and pattern.fullmatch(other.name) and is_export(other)
    )


def describe_export(path: Path) -> str:
    """``return 500.0 at env step 28000``: how the policy in the export at ``path`` scored."""
    from tfrl.export import read_metadata

    evaluation = read_metadata(path).get("evaluation") or {}
    if evaluation.get("mean_return") is None:
        return "not evaluated"
    step = evaluation.get("env_step")
    return f"return {evaluation['mean_return']:.1f}" + (f" at env step {step}" if step is not None else "")


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from tfrl.export import load_policy
    from tfrl.training import evaluate

    policy = load_policy(args.path)
    env_id = args.env_id or policy.metadata["env_id"]
    given = parse_env_kwargs(args.env_kwargs)
    env_kwargs = given if given or args.env_id else policy.metadata.get("env_kwargs", {})
    frame_stack = policy.metadata.get("preprocessing", {}).get("frame_stack", 0)
    returns = evaluate(policy, env_id, args.episodes, args.seed, frame_stack=frame_stack, env_kwargs=env_kwargs)
    print(
        f"{policy}: mean return {np.mean(returns):.2f} ± {np.std(returns):.2f} over {len(returns)} episodes "
        f"on {env_id} (min {np.min(returns):.1f}, max {np.max(returns):.1f})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from tfrl.export import DEFAULT_EXPORT_DIR, check_export_target
    from tfrl.training import export_best, export_run, restore_run

    settings, agent, best = restore_run(args.run_dir)
    out = Path(args.out or settings.export_path or Path(DEFAULT_EXPORT_DIR) / settings.name)
    check_export_target(out, run_dir=args.run_dir)
    if args.final or best.weights is None:
        export_run(agent, settings, args.run_dir, out)
        print(f"exported {settings.algorithm} on {settings.env_id}, last weights at step {agent.env_steps}, to {out}")
    else:
        export_best(agent, settings, Path(args.run_dir), out, best)
        print(
            f"exported {settings.algorithm} on {settings.env_id}, best-evaluated policy "
            f"(return {best.score:.1f} at step {best.step}), to {out}"
        )
    return 0


def _record(args: argparse.Namespace) -> int:
    from tfrl.recording import record

    result = record(
        args.path, args.out, args.episodes, args.seed, args.frame_skip, args.fps, args.scale, args.max_frames
    )
    returns = ", ".join(f"{value:.1f}" for value in result.returns)
    print(f"wrote {result.path}: {result.frames} frames of {len(result.returns)} episode(s), return {returns}")
    return 0


def _enjoy(args: argparse.Namespace) -> int:
    from tfrl.recording import enjoy

    returns = enjoy(args.path, args.episodes, args.seed)
    print("returns: " + ", ".join(f"{value:.1f}" for value in returns))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from tfrl.logger import plot_run

    print(f"wrote {plot_run(args.run_dir, args.out)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tfrl.agents import ALGORITHMS, get_agent, make_config
    from tfrl.training import run_defaults

    console = Console()
    if args.algorithm is None:
        table = Table(title="algorithms (tfrl list ALGORITHM shows its hyperparameters)", title_justify="left")
        for column in ("algorithm", "presets", "what it is"):
            table.add_column(column)
        for name, entry in ALGORITHMS.items():
            table.add_row(name, ", ".join(get_agent(name)[1].PRESETS), entry.summary)
        console.print(table)
        return 0
    config_class = get_agent(args.algorithm)[1]
    table = Table(title=f"{args.algorithm}: {ALGORITHMS[args.algorithm].summary}", title_justify="left")
    table.add_column("field")
    for preset in config_class.PRESETS:
        table.add_column(preset)
    configs = {preset: make_config(args.algorithm, preset).to_dict() for preset in config_class.PRESETS}
    for field in configs["default"]:
        table.add_row(field, *(str(configs[preset][field]) for preset in config_class.PRESETS))
    agent_class = get_agent(args.algorithm)[0]
    runs = {preset: run_defaults(agent_class, config_class, preset) for preset in config_class.PRESETS}
    for setting in agent_class.run_defaults:  # the run settings each preset starts from (flags override them)
        flag = "--steps" if setting == "total_steps" else f"--{setting.replace('_', '-')}"
        table.add_row(flag, *(str(runs[preset][setting]) for preset in config_class.PRESETS))
    # One column per preset: widen the console rather than cut the values short (DQN has seven).
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    Console(width=max(console.width, needed)).print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    import tfrl.quiet  # noqa: F401 — TensorFlow loads here, its start-up lines silenced

    handlers = {
        "train": _train,
        "evaluate": _evaluate,
        "export": _export,
        "record": _record,
        "enjoy": _enjoy,
        "plot": _plot,
        "list": _list,
    }
    try:
        return handlers[args.command](args)
    except TfrlError as error:
        print(f"tfrl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        from tfrl.training import Terminated

        return 143 if isinstance(interrupt, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
