"""Reliability: a run survives SIGKILL, a seed gives the same run, hostile inputs get one clear line.

1. Kills survived: one DQN CartPole-v1 run of 30,000 env steps through the ``tfrl`` command, SIGKILLed
   ``--kills`` times at random moments (one while a checkpoint is being written, the last while the
   final export is being written), each time continued with ``tfrl train --resume``. At the end the
   run must hold exactly 30,000 env steps and 30,000 replay transitions, number its episodes 1..n
   without gaps, and ship an export that loads with a finite evaluation score.
2. Determinism: each algorithm run twice with one seed; same evaluation returns and same weights?
   (A3C with 2 workers is documented to differ: the order its workers' updates arrive in is the OS's.)
3. Hostile inputs: bad arguments, files and observations, each counted as handled when the command
   exits with 2 and one ``tfrl: error:`` line naming the bad thing (the API: a ``tfrl.TfrlError``).

Prints Markdown tables and writes ``results/reliability.json``. About 5 minutes on 2 cores.

    python benchmarks/reliability.py
    python benchmarks/reliability.py --kills 6 --seed 1
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse
import contextlib
import functools
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from common import RESULTS

import tfrl
from tfrl.cli import main as cli_main
from tfrl.logger import read_jsonl
from tfrl.training import TrainResult, build_agent, load_run, restore_run

ROOT = Path(__file__).resolve().parent.parent
KILL_RUN_STEPS = 30_000
CHECKPOINT_EVERY = 500
EXPORT_NAME = "dqn-CartPole-v1"
POLL = 0.0005  # seconds between looks at the run directory while waiting for a write to watch

# ---------------------------------------------------------------------------------------------------
# 1. Kills survived


def complete_checkpoints(directory: Path) -> list[int]:
    """Env steps of the checkpoints with both halves (``ckpt-N.index`` and ``state-N.npz``), newest first."""
    names = set(os.listdir(directory)) if directory.is_dir() else set()
    steps = {int(match.group(1)) for name in names if (match := re.fullmatch(r"ckpt-(\d+)\.index", name))}
    return sorted((step for step in steps if f"state-{step}.npz" in names), reverse=True)


def leftovers(directory: Path) -> list[str]:
    """What an interrupted checkpoint write left: temporaries and halves without their other half."""
    names = os.listdir(directory) if directory.is_dir() else []
    complete = set(complete_checkpoints(directory))
    halves = [
        name
        for name in names
        if (match := re.fullmatch(r"(?:ckpt|state)-(\d+)\.(?:index|npz)", name)) and int(match.group(1)) not in complete
    ]
    return sorted([name for name in names if name.endswith(".tmp.npz") or "_temp" in name] + halves)


def episode_rows(run_dir: Path) -> list[dict]:
    """The rows of ``episodes.jsonl``, tolerating a line being written as it is read."""
    try:
        lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def new_leftovers(directory: Path, before: set[str]) -> set[str]:
    return set(leftovers(directory)) - before


def last_episode_step(run_dir: Path) -> int:
    return max((row["step"] for row in episode_rows(run_dir)), default=0)


def start_cli(argv: list[str], workdir: Path, name: str) -> subprocess.Popen:
    """Start ``tfrl ARGV`` from this worktree; its stdout and stderr go to ``<name>.out`` / ``<name>.err``."""
    with (workdir / f"{name}.out").open("w") as out, (workdir / f"{name}.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tfrl.cli", *argv],
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=err,
        )


def wait_for(condition: Callable[[], object], process: subprocess.Popen, interval: float, limit: float = 300.0):
    """Poll ``condition`` until it is truthy (returns it) or the process exits or ``limit`` passes (None)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if found := condition():
            return found
        if process.poll() is not None:
            return condition() or None
        time.sleep(interval)
    return None


def training_started(run_dir: Path, process: subprocess.Popen, resume_step: int) -> bool:
    """This process's logger exists (its TensorBoard file names its pid: the stale tail of
    ``episodes.jsonl`` is cut by then), it finished an episode past its checkpoint, and the
    run has a complete checkpoint to come back to."""
    events = list((run_dir / "tensorboard").glob(f"events.out.tfevents.*.{process.pid}.*"))
    return (
        bool(events)
        and last_episode_step(run_dir) > resume_step
        and bool(complete_checkpoints(run_dir / "checkpoints"))
    )


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def kill_run(kills: int, seed: int, rng: random.Random, workdir: Path) -> dict:
    """One 30,000-step DQN run killed ``kills`` times and resumed each time; returns what was measured."""
    logdir, export_dir = workdir / "runs", workdir / "exports"
    first = ["train", "dqn", "--env", "CartPole-v1", "--steps", str(KILL_RUN_STEPS), "--no-early-stop"]
    first += ["--checkpoint-every", str(CHECKPOINT_EVERY), "--eval-every", "2000", "--no-progress", "--seed", str(seed)]
    first += ["--logdir", str(logdir), "--export-dir", str(export_dir)]
    mid_checkpoint = rng.randrange(kills - 1) if kills > 1 else None  # which kill waits for a checkpoint write
    records, run_dir, resume_step = [], None, 0
    trained_steps, trained_seconds = 1_500.0, 1.0  # the speed so far (a guess of 1,500 steps/s to start)
    started_at = time.perf_counter()
    for index in range(kills):
        argv = first if run_dir is None else ["train", "--resume", str(run_dir), "--no-progress"]
        process = start_cli(argv, workdir, f"process-{index}")
        if run_dir is None:
            run_dir = wait_for(lambda: next(logdir.glob("dqn-CartPole-v1-*"), None), process, 0.05)
            if run_dir is None:
                raise RuntimeError(f"the run did not start: {(workdir / 'process-0.err').read_text()}")
        checkpoints = run_dir / "checkpoints"
        moment = "final export" if index == kills - 1 else "checkpoint write" if index == mid_checkpoint else "random"
        record = {"kill": index + 1, "moment": moment, "process": f"process-{index}", "delay_s": None}
        before = set(leftovers(checkpoints))
        if moment == "final export":
            wait_for(lambda: next(export_dir.glob(f".{EXPORT_NAME}-new-*"), None), process, 0.002, 600)
            time.sleep(rng.uniform(0.0, 0.15))  # an export takes a few tenths of a second: land inside it
        else:
            wait_for(functools.partial(training_started, run_dir, process, resume_step), process, 0.01)
            segment_start, segment_step = time.perf_counter(), last_episode_step(run_dir)
            if moment == "checkpoint write":
                wait_for(functools.partial(new_leftovers, checkpoints, before), process, POLL, 120)
            else:
                # spread the kills over what is left: on average 1/(k+1) of it for each of the k to come
                left = (KILL_RUN_STEPS - resume_step) / (trained_steps / trained_seconds) / (kills - index)
                record["delay_s"] = round(rng.uniform(0.2, 1.4) * left, 2)
                wait_for(lambda: None, process, 0.01, record["delay_s"])
        if process.poll() is not None:  # finished (or failed) before the kill: nothing more to kill
            record["exit_code"] = process.returncode
            records.append(record)
            break
        kill(process)
        if moment != "final export":
            trained_seconds += time.perf_counter() - segment_start
            trained_steps += max(0, last_episode_step(run_dir) - segment_step)
        newest = complete_checkpoints(checkpoints)
        left_behind = leftovers(checkpoints) + [path.name for path in export_dir.glob(f".{EXPORT_NAME}-*")]
        record.update(
            exit_code=process.returncode,
            last_logged_step=last_episode_step(run_dir),
            left_behind=[name for name in left_behind if name not in before],
            resume_step=newest[0] if newest else None,
            steps_lost=max(0, last_episode_step(run_dir) - newest[0]) if newest else None,
        )
        resume_step = newest[0] if newest else 0
        records.append(record)
    final = start_cli(["train", "--resume", str(run_dir), "--no-progress"], workdir, "process-final")
    final.wait(timeout=600)
    resumes = [record["process"] for record in records[1:]] + ["process-final"]
    exit_codes = [record["exit_code"] for record in records[1:]] + [final.returncode]
    for record, resume, code in zip(records, resumes, exit_codes, strict=True):
        # the resume after a kill survived it if it trained on until killed in turn, or finished
        record["survived"] = record["exit_code"] == -signal.SIGKILL and code in (0, -signal.SIGKILL)
        record["resume_said"] = [line for line in (workdir / f"{resume}.err").read_text().splitlines() if line]
    return {
        "kills": [record for record in records if record["exit_code"] == -signal.SIGKILL],
        "not_killed": [record for record in records if record["exit_code"] != -signal.SIGKILL],
        "final_exit_code": final.returncode,
        "final_stderr": (workdir / "process-final.err").read_text().strip(),
        "checks": end_checks(run_dir, export_dir / EXPORT_NAME),
        "wall_seconds": round(time.perf_counter() - started_at, 1),
    }


def end_checks(run_dir: Path, export: Path) -> list[dict]:
    """What must hold once the killed run has finished: ``(check, expected, got, ok)`` rows."""
    _, agent, _ = restore_run(run_dir)
    numbers = [row["episode"] for row in read_jsonl(run_dir / "episodes.jsonl")]
    steps = [row["step"] for row in read_jsonl(run_dir / "episodes.jsonl")]
    try:
        policy = tfrl.load_policy(export)
        score = (policy.metadata.get("evaluation") or {}).get("mean_return")
        action = policy(np.zeros(4, np.float32))
        exported = f"loads; return {score}; action {action}"
        export_ok = score is not None and bool(np.isfinite(score))
    except Exception as error:  # noqa: BLE001 — a finding, reported as such
        exported, export_ok = f"{type(error).__name__}: {error}", False
    stray = leftovers(run_dir / "checkpoints") + [path.name for path in export.parent.glob(f".{EXPORT_NAME}-*")]
    gap_free = numbers == list(range(1, len(numbers) + 1))
    return [
        {"check": "env steps", "expected": KILL_RUN_STEPS, "got": agent.env_steps},
        {"check": "replay transitions", "expected": KILL_RUN_STEPS, "got": len(agent.replay)},
        {
            "check": "episode numbers",
            "expected": "1..n, no gaps",
            "got": f"1..{len(numbers)}, no gaps" if gap_free else f"broken near {_first_gap(numbers)}",
            "ok": gap_free,
        },
        {
            "check": "episode steps",
            "expected": "non-decreasing",
            "got": "non-decreasing" if steps == sorted(steps) else "out of order",
        },
        {"check": "export", "expected": "loads, finite score", "got": exported, "ok": export_ok},
        {"check": "checkpoint / export leftovers", "expected": "none", "got": ", ".join(stray) or "none"},
    ]


def _first_gap(numbers: list[int]) -> list[int]:
    index = next(index for index, number in enumerate(numbers) if number != index + 1)
    return numbers[max(0, index - 2) : index + 3]


# ---------------------------------------------------------------------------------------------------
# 2. Determinism per algorithm (the settings of tests/test_determinism.py's SHORT_RUNS)

SHORT_RUNS = {
    "dqn": ("dqn", "CartPole-v1", 2_000, {"learning_starts": 500, "train_freq": 64, "gradient_steps": 16}),
    "reinforce": ("reinforce", "CartPole-v1", 2_000, {}),
    "actor-critic": ("actor-critic", "CartPole-v1", 2_000, {}),
    "ddpg": ("ddpg", "Pendulum-v1", 800, {"learning_starts": 400, "train_freq": 100, "gradient_steps": 20}),
    "td3": ("td3", "Pendulum-v1", 800, {"learning_starts": 400, "train_freq": 100, "gradient_steps": 20}),
    "a3c (workers=1)": ("a3c", "CartPole-v1", 1_000, {"workers": 1}),
    "a3c (workers=2)": ("a3c", "CartPole-v1", 1_000, {"workers": 2}),
}
EXPECTED_TO_DIFFER = {"a3c (workers=2)"}


def determinism(seed: int, workdir: Path) -> list[dict]:
    rows = []
    for label, (algorithm, env_id, steps, overrides) in SHORT_RUNS.items():
        start = time.perf_counter()
        first, second = (
            tfrl.train(
                algorithm,
                env_id,
                seed=seed,
                total_steps=steps,
                eval_every=steps // 2,
                eval_episodes=3,
                overrides=overrides,
                logdir=workdir / f"{algorithm}-{len(overrides)}-{name}",
                export=False,
                progress=False,
            )
            for name in ("a", "b")
        )
        returns = [[row["returns"] for row in read_jsonl(run.run_dir / "evaluations.jsonl")] for run in (first, second)]
        same_weights = all(
            np.array_equal(mine, theirs)
            for name, network in first.agent.networks().items()
            for mine, theirs in zip(network.get_weights(), second.agent.networks()[name].get_weights(), strict=True)
        )
        settings, _ = load_run(first.run_dir)
        untrained = build_agent(settings, first.agent.config).networks()
        trained = any(
            not np.array_equal(mine, initial)
            for name, network in first.agent.networks().items()
            for mine, initial in zip(network.get_weights(), untrained[name].get_weights(), strict=True)
        )
        rows.append(
            {
                "algorithm": label,
                "env_id": env_id,
                "env_steps": steps,
                "same_eval_returns": returns[0] == returns[1],
                "same_weights": same_weights,
                "weights_changed_by_training": trained,
                "expected_same": label not in EXPECTED_TO_DIFFER,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(" ".join(f"{key}={value}" for key, value in rows[-1].items()), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------
# 3. Hostile inputs


def cli(argv: list[str]) -> tuple[int, str]:
    """Run ``tfrl ARGV`` in this process: exit code and what it wrote to stderr (or the escaped exception)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as error:  # noqa: BLE001 — an unhandled input: reported, not hidden
        return -1, f"{err.getvalue()}Traceback (escaped): {type(error).__name__}: {error}"
    return code, err.getvalue()


def api(call: Callable[[], object]) -> tuple[int, str]:
    """Run an API call: 2 and ``tfrl: error: <message>`` for a TfrlError, as the command would print it."""
    try:
        call()
    except tfrl.TfrlError as error:
        return 2, f"tfrl: error: {error}\n"
    except Exception as error:  # noqa: BLE001 — an unhandled input: reported, not hidden
        return -1, f"Traceback (escaped): {type(error).__name__}: {error}"
    return 0, "no error raised"


def judge(name: str, names: str, result: tuple[int, str]) -> dict:
    code, stderr = result
    lines = [line for line in stderr.splitlines() if line.strip()]
    handled = (
        code == 2
        and len(lines) == 1
        and lines[0].startswith("tfrl: error: ")
        and names.lower() in lines[0].lower()
        and "Traceback" not in stderr
    )
    return {"input": name, "handled": handled, "exit": code, "names": names, "message": " | ".join(lines)}


def small_run(workdir: Path, seed: int) -> TrainResult:
    """A 1,000-step DQN run with two checkpoints and an export, for the damaged copies below."""
    return tfrl.train(
        "dqn",
        "CartPole-v1",
        seed=seed,
        total_steps=1_000,
        eval_every=500,
        eval_episodes=2,
        checkpoint_every=500,
        logdir=workdir / "runs",
        export_dir=workdir / "exports",
        progress=False,
    )


def damaged_copy(export: Path, workdir: Path, name: str, damage: Callable[[Path], None]) -> str:
    copy = workdir / name
    shutil.copytree(export, copy)
    damage(copy)
    return str(copy)


def _truncate(path: Path, size: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _drop_observation_space(copy: Path) -> None:
    path = copy / "assets" / "tfrl.json"
    metadata = json.loads(path.read_text())
    del metadata["observation_space"]
    path.write_text(json.dumps(metadata))


def foreign_saved_model(path: Path) -> str:
    module = tf.Module()
    module.double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(path))
    return str(path)


def truncated_states_copy(run_dir: Path, workdir: Path) -> str:
    copy = workdir / "run-truncated-states"
    shutil.copytree(run_dir, copy)
    for state in (copy / "checkpoints").glob("state-*.npz"):
        _truncate(state, 100)
    return str(copy)


def hostile_inputs(seed: int, workdir: Path) -> list[dict]:
    run = small_run(workdir, seed)
    export = run.export_path
    policy = tfrl.load_policy(export)
    a_file = workdir / "a-file.txt"
    a_file.write_text("keep me")
    foreign_dir = workdir / "foreign-exports" / EXPORT_NAME
    foreign_dir.mkdir(parents=True)
    (foreign_dir / "data.csv").write_text("1,2\n")
    out_dot = workdir / "cwd-with-files"
    out_dot.mkdir()
    (out_dot / "notes.txt").write_text("keep me")
    logdir = ["--logdir", str(workdir / "hostile-runs"), "--export-dir", str(workdir / "hostile-exports")]
    short = ["train", "dqn", "--env", "CartPole-v1", "--steps", "100", "--no-progress", "--logdir", str(workdir)]
    train = [*short, "--export-dir", str(workdir / "hostile-exports")]
    diverging = ["train", "dqn", "--env", "CartPole-v1", "--steps", "20000", "--no-progress", "--eval-every", "1000"]
    diverging += ["--checkpoint-every", "1000", "--logdir", str(workdir / "diverge-runs")]
    diverging += ["--export-dir", str(workdir / "diverge-exports"), "--set", "learning_rate=1e30"]
    diverging += ["--set", "learning_starts=500"]
    cases = [
        ("unknown env id", "NoSuchEnv-v0", ["train", "dqn", "--env", "NoSuchEnv-v0", *logdir]),
        ("continuous env for dqn", "Pendulum-v1", ["train", "dqn", "--env", "Pendulum-v1", *logdir]),
        ("unknown algorithm", "dqnn", ["train", "dqnn", "--env", "CartPole-v1", *logdir]),
        ("negative learning rate", "learning_rate", [*train, "--set", "learning_rate=-0.001"]),
        ("misspelt config field", "lerning_rate", [*train, "--set", "lerning_rate=1e-3"]),
        ("config value of the wrong type", "gamma", [*train, "--set", "gamma=abc"]),
        ("--set without '='", "KEY=VALUE", [*train, "--set", "learning_rate"]),
        ("batch_size > buffer_size", "batch_size", [*train, "--set", "batch_size=512", "--set", "buffer_size=100"]),
        ("a3c workers=500", "workers", ["train", "a3c", "--env", "CartPole-v1", "--set", "workers=500", *logdir]),
        ("--steps 0", "total_steps", [*train, "--steps", "0"]),
        ("--seed -1", "seed", [*train, "--seed", "-1"]),
        ("unknown activation", "activation", [*train, "--set", "activation=bogus"]),
        ("--discretize 1", "discretize", ["train", "dqn", "--env", "Pendulum-v1", "--discretize", "1", *logdir]),
        ("missing --config file", "nope.toml", [*train, "--config", str(workdir / "nope.toml")]),
        (
            "learning_rate=1e30 (diverges)",
            "diverged",
            diverging,
        ),
        ("export path is a regular file", str(a_file), [*short, "--export-dir", str(a_file)]),
        (
            "export to a non-empty non-export dir",
            str(foreign_dir),
            [*short, "--export-dir", str(foreign_dir.parent)],
        ),
        ("export --out . (a non-empty dir)", "not a tfrl export", ["export", str(run.run_dir), "--out", "."]),
        (
            "resume a directory that is not a run",
            "not a tfrl run",
            ["train", "--resume", str(workdir / "cwd-with-files")],
        ),
        (
            "resume, every state-*.npz truncated",
            "no complete checkpoint",
            ["train", "--resume", "STATES", "--no-progress"],
        ),
        ("evaluate a missing path", "no-such-policy", ["evaluate", str(workdir / "no-such-policy")]),
        ("evaluate a foreign SavedModel", "not a tfrl export", ["evaluate", "FOREIGN"]),
        ("evaluate, saved_model.pb truncated", "damaged export", ["evaluate", "TRUNCATED"]),
        ("evaluate, variables/ removed", "variables", ["evaluate", "NO_VARIABLES"]),
        ("evaluate, tfrl.json lacks observation_space", "observation_space", ["evaluate", "NO_OBSERVATION_SPACE"]),
        ("evaluate --episodes 0", "episodes", ["evaluate", str(export), "--episodes", "0"]),
        ("evaluate on an env of another shape", "shape", ["evaluate", str(export), "--env", "Acrobot-v1"]),
    ]
    prepared = {
        "STATES": lambda: truncated_states_copy(run.run_dir, workdir),
        "FOREIGN": lambda: foreign_saved_model(workdir / "foreign-savedmodel"),
        "TRUNCATED": lambda: damaged_copy(export, workdir, "truncated", lambda c: _truncate(c / "saved_model.pb")),
        "NO_VARIABLES": lambda: damaged_copy(export, workdir, "no-vars", lambda c: shutil.rmtree(c / "variables")),
        "NO_OBSERVATION_SPACE": lambda: damaged_copy(export, workdir, "no-obs", _drop_observation_space),
    }
    rows = []
    for name, names, argv in cases:
        argv = [prepared[item]() if item in prepared else item for item in argv]
        directory = out_dot if "--out" in argv else workdir  # `--out .` is tried inside a directory holding a file
        with _chdir(directory):
            rows.append(judge(name, names, cli(argv)))
        print(f"{'handled' if rows[-1]['handled'] else 'NOT HANDLED'}: {name}: {rows[-1]['message']}", flush=True)
    rows.append(judge("load_policy, wrong-shape observation", "shape", api(lambda: policy(np.zeros(3, np.float32)))))
    rows.append(judge("load_policy, NaN observation", "NaN", api(lambda: policy(np.array([0.0, np.nan, 0.0, 0.0])))))
    rows.append(judge("load_policy, ragged observation", "observation", api(lambda: policy([[0.0, 0.0], [0.0]]))))
    huge = np.array([1e40, 0.0, 0.0, 0.0])  # finite as float64, infinite as the policy's float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows.append(judge("load_policy, float64 1e40 (inf in float32)", "observation", api(lambda: policy(huge))))
    bad_gamma = dict(
        overrides={"gamma": 2.0}, total_steps=100, logdir=workdir / "api-runs", export=False, progress=False
    )
    rows.append(
        judge(
            "tfrl.train(overrides={'gamma': 2.0})", "gamma", api(lambda: tfrl.train("dqn", "CartPole-v1", **bad_gamma))
        )
    )
    survivors = (
        a_file.read_text() == "keep me" and (foreign_dir / "data.csv").exists() and (out_dot / "notes.txt").exists()
    )
    rows.append(
        {
            "input": "(afterwards) refused targets untouched",
            "handled": survivors,
            "exit": None,
            "names": "",
            "message": "the regular file, the foreign data.csv and the directory behind `--out .` are all still there"
            if survivors
            else "a refused export target was modified or deleted",
        }
    )
    return rows


@contextlib.contextmanager
def _chdir(directory: Path):
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------------------------------------------
# Report


def table(columns: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join("-" if cell is None else str(cell).replace("|", "\\|") for cell in row) + " |")


def report_kills(result: dict) -> dict:
    kills = result["kills"]
    lost = [record["steps_lost"] for record in kills if record["steps_lost"] is not None]
    checks = result["checks"]
    for check in checks:
        check.setdefault("ok", check["got"] == check["expected"])
    summary = {
        "kills": len(kills),
        "survived": sum(record["survived"] for record in kills),
        "median_steps_lost": statistics.median(lost) if lost else None,
        "max_steps_lost": max(lost) if lost else None,
        "checkpoint_every": CHECKPOINT_EVERY,
        "end_checks_passed": f"{sum(check['ok'] for check in checks)}/{len(checks)}",
        "wall_seconds": result["wall_seconds"],
    }
    print(f"\n## Kills survived: DQN on CartPole-v1, {KILL_RUN_STEPS} env steps, SIGKILL and `tfrl train --resume`\n")
    table(list(summary), [list(summary.values())])
    print()
    table(
        ["kill", "moment", "delay s", "last logged step", "resumed from", "steps lost", "left behind", "resume said"],
        [
            [
                record["kill"],
                record["moment"],
                record["delay_s"],
                record["last_logged_step"],
                record["resume_step"],
                record["steps_lost"],
                ", ".join(record["left_behind"]) or "-",
                " / ".join(line[:80] for line in record["resume_said"]) or "-",
            ]
            for record in kills
        ],
    )
    print()
    table(["end check", "expected", "got", "ok"], [[c["check"], c["expected"], c["got"], c["ok"]] for c in checks])
    for record in result["not_killed"]:
        print(f"\nkill {record['kill']} did not land: {record['process']} exited with {record['exit_code']} first")
    if result["final_exit_code"] != 0:
        print(f"\nthe final resume exited with {result['final_exit_code']}: {result['final_stderr']}")
    return summary


def report_determinism(rows: list[dict]) -> None:
    print("\n## Determinism: two runs, one seed\n")
    table(
        ["algorithm", "env", "env steps", "same eval returns", "same weights", "trained", "expected", "seconds"],
        [
            [
                row["algorithm"],
                row["env_id"],
                row["env_steps"],
                "yes" if row["same_eval_returns"] else "no",
                "yes" if row["same_weights"] else "no",
                "yes" if row["weights_changed_by_training"] else "no",
                "same" if row["expected_same"] else "may differ (documented)",
                row["seconds"],
            ]
            for row in rows
        ],
    )


def report_hostile(rows: list[dict]) -> None:
    handled = sum(row["handled"] for row in rows)
    print(f"\n## Hostile inputs: {handled}/{len(rows)} handled (exit 2, one `tfrl: error:` line naming it)\n")
    table(
        ["input", "handled", "message"],
        [[row["input"], "yes" if row["handled"] else "NO", _shorten(row["message"])] for row in rows],
    )


def _shorten(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs of the 30,000-step run (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the runs and the kill moments")
    parser.add_argument("--skip", nargs="*", default=[], choices=["kills", "determinism", "hostile"])
    args = parser.parse_args()
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    rng = random.Random(args.seed)
    record: dict = {"benchmark": "reliability", "seed": args.seed}
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        if "kills" not in args.skip:
            (root / "kills").mkdir()
            kills = kill_run(args.kills, args.seed, rng, root / "kills")
            record["kills"] = {"summary": report_kills(kills), **kills}
        if "determinism" not in args.skip:
            (root / "determinism").mkdir()
            record["determinism"] = determinism(args.seed, root / "determinism")
            report_determinism(record["determinism"])
        if "hostile" not in args.skip:
            (root / "hostile").mkdir()
            record["hostile_inputs"] = hostile_inputs(args.seed, root / "hostile")
            report_hostile(record["hostile_inputs"])
    record["load_average_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
