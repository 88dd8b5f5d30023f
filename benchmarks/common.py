"""What every learning benchmark shares: train over seeds, find when a target return was reached,
print a Markdown table and write JSON to ``benchmarks/results/``."""

from __future__ import annotations

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import tfrl
from tfrl.cli import parse_overrides
from tfrl.logger import read_jsonl

RESULTS = Path(__file__).parent / "results"


def cpu_busy_share(seconds: float = 1.0) -> float:
    """The share of all cores' time spent busy over the next ``seconds`` (Linux ``/proc/stat``)."""

    def busy_and_total() -> tuple[int, int]:
        ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = ticks[3] + ticks[4]  # idle and iowait
        return sum(ticks) - idle, sum(ticks)

    busy_start, total_start = busy_and_total()
    time.sleep(seconds)
    busy_end, total_end = busy_and_total()
    return (busy_end - busy_start) / max(total_end - total_start, 1)


def wait_for_quiet_cpus(limit: float = 0.15, patience: float = 30.0) -> float:
    """Wait until the cores are busy less than ``limit`` of a second (at most ``patience`` seconds: what
    a run left behind, such as a Ray cluster shutting down, must not slow the next measurement); returns
    the last busy share measured, to record beside the result."""
    deadline = time.perf_counter() + patience
    busy = cpu_busy_share()
    while busy > limit and time.perf_counter() < deadline:
        busy = cpu_busy_share()
    return busy


def arguments(description: str, steps: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=steps, help="env steps per run (default %(default)s)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None, help="env steps between evaluations")
    return parser


def run_seeds(algorithm: str, env_id: str, target: float, args: argparse.Namespace) -> list[dict]:
    """Train ``algorithm`` once per seed; each row says whether and when the evaluation mean reached ``target``.

    Times count from the ``train`` call: building the agent and tracing its functions (``setup_seconds``)
    is part of the wait a user has, and of a peer's time, whose clock starts before it builds its model.
    """
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for seed in args.seeds:
            result = tfrl.train(
                algorithm,
                env_id,
                seed=seed,
                total_steps=args.steps,
                preset=args.preset,
                overrides=parse_overrides(args.overrides),
                num_envs=args.num_envs,
                eval_every=args.eval_every,
                logdir=logdir,
                export=False,
                progress=False,
            )
            evaluations = read_jsonl(result.run_dir / "evaluations.jsonl")
            reached = next((row for row in evaluations if row["mean"] >= target), None)
            rows.append(
                {
                    "algorithm": algorithm,
                    "seed": seed,
                    "reached_target": reached is not None,
                    "steps_to_target": reached["step"] if reached else None,
                    "seconds_to_target": round(reached["time"] + result.setup_seconds, 3) if reached else None,
                    "env_steps": result.env_steps,
                    "setup_seconds": round(result.setup_seconds, 2),
                    "wall_seconds": round(result.setup_seconds + result.wall_seconds, 2),
                    "train_steps_per_second": round(result.train_steps_per_second),
                    "best_eval_return": round(max(row["mean"] for row in evaluations), 1),
                    "final_eval_return": round(result.final_return, 1),
                }
            )
            print(" ".join(f"{key}={value}" for key, value in rows[-1].items()), flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    reached = [row for row in rows if row["reached_target"]]
    return {
        "reached_target": f"{len(reached)}/{len(rows)}",
        "median_steps_to_target": statistics.median(row["steps_to_target"] for row in reached) if reached else None,
        "median_seconds_to_target": statistics.median(row["seconds_to_target"] for row in reached) if reached else None,
        "median_wall_seconds": statistics.median(row["wall_seconds"] for row in rows),
        "median_train_steps_per_second": statistics.median(row["train_steps_per_second"] for row in rows),
        "median_final_eval_return": statistics.median(row["final_eval_return"] for row in rows),
    }


def report(name: str, env_id: str, target: float, rows: list[dict], args: argparse.Namespace) -> None:
    """Print one Markdown table per algorithm with its summary, and write ``results/<name>.json``."""
    columns = [
        "seed",
        "reached_target",
        "steps_to_target",
        "seconds_to_target",
        "env_steps",
        "wall_seconds",
        "train_steps_per_second",
        "best_eval_return",
        "final_eval_return",
    ]
    summaries = {}
    for algorithm in dict.fromkeys(row["algorithm"] for row in rows):
        selected = [row for row in rows if row["algorithm"] == algorithm]
        summaries[algorithm] = summarise(selected)
        print(
            f"\n{algorithm} on {env_id} (target: mean evaluation return >= {target}, {args.steps} env steps at most)\n"
        )
        print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        for row in selected:
            print("| " + " | ".join("-" if row[column] is None else str(row[column]) for column in columns) + " |")
        print("\n" + ", ".join(f"{key}: {value}" for key, value in summaries[algorithm].items()))
    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()[0]
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {
                "benchmark": name,
                "env_id": env_id,
                "target": target,
                "max_steps": args.steps,
                "preset": args.preset,
                "overrides": args.overrides,
                "load_average_at_end": round(load, 2),
                "runs": rows,
                "summary": summaries,
            },
            indent=2,
        )
    )
