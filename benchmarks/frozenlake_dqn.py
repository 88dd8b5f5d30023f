"""DQN on slippery FrozenLake-v1 (Discrete(16) observations, one-hot encoded) against the exact optimum.

The optimum is value iteration's policy on the env's own model (``tfrl.mdp``, γ = 1, so a state's value
is its probability of reaching the goal; see ``scripts/frozenlake_exact.py``): its success rate within
the 100-step limit is computed exactly and also measured. Each DQN seed trains for ``--steps`` env steps
without stopping at the env's threshold (a 20-episode mean of 0.70 is reached by luck long before the
policy is good), and the final greedy policy plays the same ``--episodes`` seeded episodes as the optimum:
at 1,000 episodes the 95% interval is about ±0.03, where the 20-episode evaluation's is ±0.2. The
DQN preset is ``frozenlake`` unless ``--preset`` says otherwise.
Prints a table and writes ``results/frozenlake_dqn.json``. Target: every seed within 0.05 of the optimum.

    python benchmarks/frozenlake_dqn.py
    python benchmarks/frozenlake_dqn.py --seeds 0 --preset default --set learning_rate=1e-3
"""

from __future__ import annotations

import tfrl.quiet

# isort: split
import functools
import json
import os
import tempfile
import time

import gymnasium as gym
import numpy as np
from common import RESULTS, arguments

import tfrl
from tfrl.cli import parse_overrides
from tfrl.mdp import MarkovDecisionProcess, horizon_values, value_iteration, wilson_interval
from tfrl.training import evaluate

ENV_ID = "FrozenLake-v1"
TOLERANCE = 0.05


def optimum(episodes: int, seed: int) -> dict:
    """Value iteration's policy: exact success probability within the step limit, and measured."""
    env = gym.make(ENV_ID)
    mdp = MarkovDecisionProcess.from_gymnasium(env, gamma=1.0)
    solution = value_iteration(mdp, tol=1e-12)
    start = env.reset(seed=seed)[0]
    exact = horizon_values(mdp.to_mrp(mdp.deterministic_policy(solution.policy)), env.spec.max_episode_steps)[start]
    env.close()
    table = solution.policy[: env.observation_space.n]
    returns = evaluate(lambda observations: table[np.asarray(observations, np.int64)], ENV_ID, episodes, seed)
    return {"exact_success": round(float(exact), 4), **measured(returns)}


def measured(returns: np.ndarray) -> dict:
    low, high = wilson_interval(int(returns.sum()), len(returns))
    return {"success": round(float(returns.mean()), 4), "interval_95": [round(low, 4), round(high, 4)]}


def main() -> None:
    parser = arguments(__doc__, steps=100_000)
    parser.set_defaults(seeds=[0, 1, 2], preset="frozenlake")
    parser.add_argument("--episodes", type=int, default=1_000, help="evaluation episodes (default %(default)s)")
    parser.add_argument("--eval-seed", type=int, default=10_000, help="seed of the first evaluation episode")
    args = parser.parse_args()

    reference = optimum(args.episodes, args.eval_seed)
    print(f"value iteration: exact {reference['exact_success']}, measured {reference['success']}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for seed in args.seeds:
            start = time.perf_counter()
            result = tfrl.train(
                "dqn",
                ENV_ID,
                seed=seed,
                total_steps=args.steps,
                preset=args.preset,
                overrides=parse_overrides(args.overrides),
                num_envs=args.num_envs,
                eval_every=args.steps,
                stop_at_threshold=False,
                logdir=logdir,
                export_dir=None,
                progress=False,
            )
            returns = evaluate(
                functools.partial(result.agent.act, explore=False),
                ENV_ID,
                args.episodes,
                args.eval_seed,
            )
            row = {"seed": seed, "env_steps": result.env_steps, **measured(returns)}
            row["gap_to_optimum"] = round(reference["exact_success"] - row["success"], 4)
            row["within_tolerance"] = row["gap_to_optimum"] <= TOLERANCE
            row["wall_seconds"] = round(time.perf_counter() - start, 1)
            row["train_steps_per_second"] = round(result.train_steps_per_second)
            rows.append(row)
            print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)

    columns = list(rows[0])
    print(f"\nDQN on {ENV_ID} (slippery), {args.steps} env steps, success over {args.episodes} evaluation episodes\n")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in columns) + " |")
    print(
        f"| value iteration (exact {reference['exact_success']}) | - | {reference['success']} | "
        f"{reference['interval_95']} | {round(reference['exact_success'] - reference['success'], 4)} | - | - | - |"
    )
    within = sum(row["within_tolerance"] for row in rows)
    print(f"\nwithin {TOLERANCE} of the optimum: {within}/{len(rows)} seeds")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frozenlake_dqn.json").write_text(
        json.dumps(
            {
                "benchmark": "frozenlake_dqn",
                "env_id": ENV_ID,
                "max_steps": args.steps,
                "preset": args.preset,
                "overrides": args.overrides,
                "evaluation_episodes": args.episodes,
                "evaluation_seed": args.eval_seed,
                "tolerance": TOLERANCE,
                "load_average_at_end": round(os.getloadavg()[0], 2),
                "value_iteration": reference,
                "runs": rows,
                "summary": {"within_tolerance": f"{within}/{len(rows)}"},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
