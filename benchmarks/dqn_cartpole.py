"""DQN on CartPole-v1: env steps and wall time to solve, training throughput, over seeds.

Solved = the mean deterministic evaluation return over 20 episodes reaches 475 (the env's
reward_threshold). Prints a table and writes ``benchmarks/results/dqn_cartpole.json``.

    python benchmarks/dqn_cartpole.py                    # seeds 0-4, 50k steps each
    python benchmarks/dqn_cartpole.py --seeds 0 1 --set learning_rate=1e-3
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import tfrl  # noqa: E402
from tfrl.cli import parse_overrides  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dqn_cartpole.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for seed in args.seeds:
            result = tfrl.train("dqn", "CartPole-v1", seed=seed, total_steps=args.steps, preset=args.preset,
                                overrides=parse_overrides(args.overrides), num_envs=args.num_envs,
                                logdir=logdir, export_dir=None, progress=False)
            rows.append({"seed": seed, "solved": result.solved, "env_steps": result.env_steps,
                         "wall_seconds": round(result.wall_seconds, 2),
                         "train_steps_per_second": round(result.train_steps_per_second),
                         "final_eval_return": result.final_return})
            row = rows[-1]
            print(f"seed {seed}: solved={row['solved']!s:5} steps={row['env_steps']:6d} "
                  f"wall={row['wall_seconds']:6.1f}s  {row['train_steps_per_second']:5d} steps/s  "
                  f"eval={row['final_eval_return']:.1f}", flush=True)

    solved = [row for row in rows if row["solved"]]
    summary = {
        "seeds_solved": f"{len(solved)}/{len(rows)}",
        "median_steps_to_solve": statistics.median(row["env_steps"] for row in solved) if solved else None,
        "median_wall_seconds_to_solve": statistics.median(row["wall_seconds"] for row in solved) if solved else None,
        "median_train_steps_per_second": statistics.median(row["train_steps_per_second"] for row in rows),
    }
    print("\n| seed | solved | env steps | wall s | train steps/s | final eval |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['seed']} | {'yes' if row['solved'] else 'no'} | {row['env_steps']} | {row['wall_seconds']} "
              f"| {row['train_steps_per_second']} | {row['final_eval_return']:.1f} |")
    print("\n" + "  ".join(f"{key}: {value}" for key, value in summary.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "dqn_cartpole", "max_steps": args.steps, "preset": args.preset,
                                          "overrides": args.overrides, "runs": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
