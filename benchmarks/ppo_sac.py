"""PPO and SAC against Stable-Baselines3 with rl-zoo3's tuned settings, on the same work in the same run.

Tasks, each over seeds 0-4 with rl-zoo3's env-step budget:
    ppo-cartpole      PPO on CartPole-v1,                target 475 (the env's threshold: the run stops there)
    ppo-pendulum      PPO on Pendulum-v1 (pendulum preset), target −200 (no threshold: all the steps run)
    sac-pendulum      SAC on Pendulum-v1,                target −200
    sac-mountaincar   SAC on MountainCarContinuous-v0 (mountaincar preset), target 90 (the env's threshold)
Both libraries are evaluated alike: every ``eval_every`` env steps, 20 deterministic episodes; the
target is reached at the first evaluation whose mean meets it, and wall times include evaluation.
Each run is a fresh Python process whose clock starts once the libraries are imported, before the
agent (or model) is built, so tfrl's tracing and compiling count as Stable-Baselines3's model
construction does. tfrl's runs share a persistent XLA cache (``tfrl.compile_cache``, as ``tfrl train``
does) that starts empty in every benchmark run: the first seed of each task compiles its update, the
later seeds load it, as a user's second and later runs on a machine do. ``--cold`` turns the cache
off, so every seed compiles.
Targets: 5/5 seeds reach each target; median wall time to it at most half Stable-Baselines3's, with
at most its env steps.

Stable-Baselines3 runs from ``benchmarks/.venv-peers`` (git-ignored), which this script creates on
first use (``pip install torch==2.13.0 stable-baselines3``); tfrl never depends on it. The machine's
load average is recorded at the start and the end. Writes ``benchmarks/results/ppo_sac.json``
(``--output`` names another file) after every task, so a long run that is stopped keeps its finished part.

    python benchmarks/ppo_sac.py --quick                  # seed 0 of ppo-cartpole and sac-pendulum
    python benchmarks/ppo_sac.py                          # everything, seeds 0-4
    python benchmarks/ppo_sac.py --tasks sac-pendulum --seeds 0 1 --no-peers
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split
import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import NamedTuple

from common import RESULTS, run_seeds, summarise

from tfrl.agents import get_agent
from tfrl.compile_cache import FLAG, OFF

PEERS = Path(__file__).parent / ".venv-peers"
PEER_PACKAGES = ["torch==2.13.0", "stable-baselines3"]


class Task(NamedTuple):
    algorithm: str
    env_id: str
    target: float
    preset: str
    steps: int
    eval_every: int
    stop_at_target: bool
    sb3: dict


# Stable-Baselines3's settings are rl-zoo3's tuned hyperparameters for the same env and algorithm
# (DLR-RM/rl-baselines3-zoo, hyperparams/ppo.yml and hyperparams/sac.yml); `lin_X` is a linear
# schedule from X to 0. The env-step budgets are theirs too (n_timesteps).
TASKS = {
    "ppo-cartpole": Task(
        "ppo",
        "CartPole-v1",
        475.0,
        "default",
        100_000,
        2_500,
        True,
        dict(
            n_envs=8,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate="lin_0.001",
            clip_range="lin_0.2",
        ),
    ),
    "ppo-pendulum": Task(
        "ppo",
        "Pendulum-v1",
        -200.0,
        "pendulum",
        100_000,
        5_000,
        False,
        dict(
            n_envs=4,
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
        ),
    ),
    "sac-pendulum": Task("sac", "Pendulum-v1", -200.0, "default", 20_000, 2_000, False, dict(learning_rate=1e-3)),
    "sac-mountaincar": Task(
        "sac",
        "MountainCarContinuous-v0",
        90.0,
        "mountaincar",
        50_000,
        5_000,
        True,
        dict(
            learning_rate=3e-4,
            buffer_size=50_000,
            batch_size=512,
            ent_coef=0.1,
            train_freq=32,
            gradient_steps=32,
            gamma=0.9999,
            tau=0.01,
            learning_starts=0,
            use_sde=True,
            policy_kwargs=dict(log_std_init=-3.67, net_arch=[64, 64]),
        ),
    ),
}
QUICK_TASKS = ["ppo-cartpole", "sac-pendulum"]


def peer_python() -> Path:
    """The peers' interpreter, after creating their virtual environment if it is missing."""
    python = PEERS / "bin" / "python"
    if not python.exists():
        print(f"creating {PEERS} with {' '.join(PEER_PACKAGES)}", flush=True)
        venv.create(PEERS, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def run_peer(name: str, task: Task, seed: int) -> dict:
    """One Stable-Baselines3 run in the peers' environment, as a row like ``common.run_seeds``'."""
    job = {
        "algorithm": task.algorithm,
        "env_id": task.env_id,
        "seed": seed,
        "steps": task.steps,
        "eval_every": task.eval_every,
        "target": task.target,
        "stop_at_target": task.stop_at_target,
        "hyperparams": task.sb3,
    }
    script = Path(__file__).parent / "sb3_peer.py"
    output = subprocess.run(
        [str(peer_python()), str(script), json.dumps(job)], check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    evaluations = result["evaluations"]
    reached = next((row for row in evaluations if row[1] >= task.target), None)
    row = {
        "algorithm": f"sb3-{task.algorithm}",
        "seed": seed,
        "reached_target": reached is not None,
        "steps_to_target": reached[0] if reached else None,
        "seconds_to_target": reached[2] if reached else None,
        "env_steps": result["env_steps"],
        "wall_seconds": round(result["wall_seconds"], 2),
        "train_steps_per_second": round(result["env_steps"] / (result["wall_seconds"] - result["evaluation_seconds"])),
        "best_eval_return": round(max(row[1] for row in evaluations), 1),
        "final_eval_return": round(evaluations[-1][1], 1),
    }
    print(f"{name} " + " ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    return row


def run_tfrl(name: str, task: Task, seeds: list[int], compile_cache: str) -> list[dict]:
    """tfrl's rows, each seed in a fresh Python process, as a user's ``tfrl train`` runs (and as each
    Stable-Baselines3 seed runs): TensorFlow's one-off costs, such as tracing the agent's functions,
    count in every seed and not only in the first. ``compile_cache``: the XLA cache directory, or "off"."""
    print(f"{name}: tfrl", flush=True)
    # the children choose the cache from TFRL_XLA_CACHE: drop the cache this process's tfrl.quiet named,
    # keep any other XLA flag the caller set
    flags = os.environ.get("TF_XLA_FLAGS", "").split()
    environment = {**os.environ, "TFRL_XLA_CACHE": compile_cache}
    environment["TF_XLA_FLAGS"] = " ".join(flag for flag in flags if not flag.startswith(FLAG))
    rows = []
    for seed in seeds:
        job = json.dumps({"name": name, "seed": seed})
        output = subprocess.run(
            [sys.executable, __file__, "--tfrl-job", job], check=True, capture_output=True, text=True, env=environment
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(f"{name} " + " ".join(f"{key}={value}" for key, value in rows[-1].items()), flush=True)
    return rows


def tfrl_job(job: dict) -> None:
    """One tfrl seed of a task (what ``run_tfrl`` starts in a fresh process): its row, as JSON, last.
    The agent's module (and TensorFlow Probability with it) is imported before the clock starts, as
    Stable-Baselines3 is imported before its own."""
    task = TASKS[job["name"]]
    get_agent(task.algorithm)
    args = argparse.Namespace(
        seeds=[job["seed"]],
        steps=task.steps,
        preset=task.preset,
        overrides=[],
        num_envs=None,
        eval_every=task.eval_every,
    )
    (row,) = run_seeds(task.algorithm, task.env_id, task.target, args)
    print(json.dumps({**row, "algorithm": f"tfrl-{task.algorithm}"}), flush=True)


def table(results: dict[str, dict[str, dict]]) -> str:
    columns = [
        "task",
        "library",
        "reached",
        "median steps to target",
        "median s to target",
        "median final return",
        "median wall s",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, libraries in results.items():
        for library, summary in libraries.items():
            cells = [
                name,
                library,
                summary["reached_target"],
                summary["median_steps_to_target"],
                summary["median_seconds_to_target"],
                summary["median_final_eval_return"],
                summary["median_wall_seconds"],
            ]
            lines.append("| " + " | ".join("-" if cell is None else str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="seed 0 of " + " and ".join(QUICK_TASKS))
    parser.add_argument("--no-peers", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--cold", action="store_true", help="no XLA cache: every tfrl seed compiles its update")
    parser.add_argument("--output", default="ppo_sac.json", help="file name under benchmarks/results/")
    parser.add_argument("--tfrl-job", help=argparse.SUPPRESS)  # one tfrl seed, in the process run_tfrl starts
    args = parser.parse_args()
    if args.tfrl_job:
        tfrl_job(json.loads(args.tfrl_job))
        return
    seeds, names = ([0], QUICK_TASKS) if args.quick else (args.seeds, args.tasks)

    load_at_start = round(os.getloadavg()[0], 2)
    runs: dict[str, list[dict]] = {}
    summaries: dict[str, dict[str, dict]] = {}
    cache = None if args.cold else tempfile.TemporaryDirectory(prefix="tfrl-xla-")
    for name in names:
        task = TASKS[name]
        rows = run_tfrl(name, task, seeds, cache.name if cache else OFF)
        if not args.no_peers:
            rows += [run_peer(name, task, seed) for seed in seeds]
        runs[name] = rows
        summaries[name] = {
            library: summarise([row for row in rows if row["algorithm"] == library])
            for library in dict.fromkeys(row["algorithm"] for row in rows)
        }
        write_results(
            args.output, names, runs, summaries, load_at_start, args.cold
        )  # after every task: a long run keeps its part
    if cache:
        cache.cleanup()
    print(f"\nload average (1 min) at start {load_at_start}, at end {round(os.getloadavg()[0], 2)}")
    print(f"{os.cpu_count()} cores\n\n{table(summaries)}")


def write_results(output: str, names: list[str], runs: dict, summaries: dict, load_at_start: float, cold: bool) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / output).write_text(
        json.dumps(
            {
                "benchmark": "ppo_sac",
                "python": sys.version.split()[0],
                "load_average_at_start": load_at_start,
                "load_average_now": round(os.getloadavg()[0], 2),
                "cores_allowed": len(os.sched_getaffinity(0)),  # fewer than the machine's under taskset
                "tfrl_xla_cache": "off" if cold else "empty at the start, shared by the seeds",
                "tasks": {name: TASKS[name]._asdict() for name in names},
                "runs": runs,
                "summary": summaries,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
