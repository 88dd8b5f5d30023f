"""REINFORCE and actor-critic: CartPole-v1 (steps and wall time to solve) and Pendulum-v1 (return reached).

CartPole-v1 is solved when the mean deterministic evaluation return over 20 episodes reaches 475
(the env's reward_threshold); the run stops there. Pendulum-v1 has no threshold: each run trains for
``--pendulum-steps`` and reports its last and best evaluation and the first env step at which the
evaluation mean beat −400 and −200. The machine's load average is recorded beside the timings.
Prints tables and writes ``benchmarks/results/policy_gradient.json``.

    python benchmarks/policy_gradient.py                      # seeds 0-4 of all three parts
    python benchmarks/policy_gradient.py --parts reinforce --seeds 0 1
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import tfrl
from tfrl.logger import read_jsonl

PARTS = {
    # name: (algorithm, env, preset)
    "reinforce": ("reinforce", "CartPole-v1", "default"),
    "actor-critic": ("actor-critic", "CartPole-v1", "default"),
    "actor-critic-pendulum": ("actor-critic", "Pendulum-v1", "pendulum"),
}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _first_step_above(evaluations: list[dict], bar: float) -> int | None:
    return next((row["step"] for row in evaluations if row["mean"] > bar), None)


def run_part(name: str, seeds: list[int], steps: int, logdir: str) -> list[dict]:
    algorithm, env_id, preset = PARTS[name]
    rows = []
    for seed in seeds:
        load_before = _load()
        result = tfrl.train(
            algorithm,
            env_id,
            seed=seed,
            total_steps=steps,
            preset=preset,
            eval_every=10_000 if env_id == "Pendulum-v1" else None,
            logdir=logdir,
            export=False,
            progress=False,
        )
        evaluations = read_jsonl(result.run_dir / "evaluations.jsonl")
        row = {
            "seed": seed,
            "solved": result.solved,
            "env_steps": result.env_steps,
            "wall_seconds": round(result.wall_seconds, 2),
            "train_steps_per_second": round(result.train_steps_per_second),
            "final_eval_return": round(result.final_return, 1),
            "best_eval_return": round(max(r["mean"] for r in evaluations), 1),
            "load_average": [load_before, _load()],
        }
        if env_id == "Pendulum-v1":
            row["first_step_above_-400"] = _first_step_above(evaluations, -400)
            row["first_step_above_-200"] = _first_step_above(evaluations, -200)
        rows.append(row)
        print(
            f"{name} seed {seed}: " + " ".join(f"{key}={value}" for key, value in row.items() if key != "seed"),
            flush=True,
        )
    return rows


def summarise(name: str, rows: list[dict]) -> dict:
    if PARTS[name][1] == "CartPole-v1":
        solved = [row for row in rows if row["solved"]]
        return {
            "seeds_solved": f"{len(solved)}/{len(rows)}",
            "median_steps_to_solve": statistics.median(r["env_steps"] for r in solved) if solved else None,
            "max_steps_to_solve": max(r["env_steps"] for r in solved) if solved else None,
            "median_wall_seconds_to_solve": statistics.median(r["wall_seconds"] for r in solved) if solved else None,
            "median_train_steps_per_second": statistics.median(r["train_steps_per_second"] for r in rows),
        }
    return {
        "mean_final_eval_return": round(statistics.mean(r["final_eval_return"] for r in rows), 1),
        "mean_best_eval_return": round(statistics.mean(r["best_eval_return"] for r in rows), 1),
        "seeds_above_-400": f"{sum(r['final_eval_return'] > -400 for r in rows)}/{len(rows)}",
        "seeds_above_-200": f"{sum(r['final_eval_return'] > -200 for r in rows)}/{len(rows)}",
        "median_train_steps_per_second": statistics.median(r["train_steps_per_second"] for r in rows),
    }


def print_table(name: str, rows: list[dict], summary: dict) -> None:
    print(f"\n### {name} ({PARTS[name][1]}, preset {PARTS[name][2]})\n")
    if PARTS[name][1] == "CartPole-v1":
        print(
            "| seed | solved | env steps | wall s | train steps/s | final eval | load avg |\n|---|---|---|---|---|---|---|"
        )
        for r in rows:
            print(
                f"| {r['seed']} | {'yes' if r['solved'] else 'no'} | {r['env_steps']} | {r['wall_seconds']} "
                f"| {r['train_steps_per_second']} | {r['final_eval_return']} | {r['load_average'][0]}-{r['load_average'][1]} |"
            )
    else:
        print(
            "| seed | env steps | final eval | best eval | first step > −400 | first step > −200 | wall s | load avg |\n"
            "|---|---|---|---|---|---|---|---|"
        )
        for r in rows:
            print(
                f"| {r['seed']} | {r['env_steps']} | {r['final_eval_return']} | {r['best_eval_return']} "
                f"| {r['first_step_above_-400']} | {r['first_step_above_-200']} | {r['wall_seconds']} "
                f"| {r['load_average'][0]}-{r['load_average'][1]} |"
            )
    print("\n" + "  ".join(f"{key}: {value}" for key, value in summary.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--cartpole-steps", type=int, default=200_000, help="budget per CartPole run (stops when solved)"
    )
    parser.add_argument("--pendulum-steps", type=int, default=300_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "policy_gradient.json"))
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as logdir:
        for name in args.parts:
            steps = args.pendulum_steps if PARTS[name][1] == "Pendulum-v1" else args.cartpole_steps
            rows = run_part(name, args.seeds, steps, logdir)
            results[name] = {
                "algorithm": PARTS[name][0],
                "env_id": PARTS[name][1],
                "preset": PARTS[name][2],
                "max_steps": steps,
                "runs": rows,
                "summary": summarise(name, rows),
            }
    for name, part in results.items():
        print_table(name, part["runs"], part["summary"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"benchmark": "policy_gradient", "cpu_count": os.cpu_count(), "parts": results}, indent=2)
    )


if __name__ == "__main__":
    main()
