"""Do the defaults learn what they were not tuned on? Every algorithm's default config (no preset) on
every gymnasium classic-control and toy-text env it supports, a few seeds and a fixed budget per env;
the table gives the best evaluation (20 episodes) beside random play and the env's threshold.

    python benchmarks/defaults.py                                   # every pair, 3 seeds (hours on 2 cores)
    python benchmarks/defaults.py --algorithms dqn ppo --envs CartPole-v1 --seeds 0
    python benchmarks/defaults.py --budget-scale 0.1                # a tenth of each env's budget

Resumable: each finished (algorithm, env, seed) is added to ``results/defaults.json`` at once and is not
run again (``--fresh`` starts over). One run at a time, one thread, so the timings mean something.
"""

from __future__ import annotations

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import tfrl
from tfrl.agents import ALGORITHMS, make_config
from tfrl.envs import make_env
from tfrl.errors import EnvError
from tfrl.training import RunSettings, build_agent

RESULTS = Path(__file__).parent / "results" / "defaults.json"
# Each env's budget in env steps: what a tuned agent needs to get well above random, a few times over.
BUDGETS = {
    "CartPole-v1": 50_000,
    "Acrobot-v1": 50_000,
    "MountainCar-v0": 100_000,
    "Pendulum-v1": 50_000,
    "MountainCarContinuous-v0": 50_000,
    "FrozenLake-v1": 20_000,
    "Taxi-v4": 50_000,
    "CliffWalking-v1": 30_000,
    "Blackjack-v1": 20_000,
}
RANDOM_EPISODES = 100


def supports(algorithm: str, env_id: str) -> bool:
    """Whether ``algorithm``'s default config takes ``env_id``'s spaces (tfrl refuses the rest by name)."""
    try:
        build_agent(RunSettings(algorithm=algorithm, env_id=env_id), make_config(algorithm, "default", None))
    except EnvError:
        return False
    return True


def random_return(env_id: str) -> float:
    """The mean return of uniformly random actions over ``RANDOM_EPISODES`` seeded episodes."""
    space = make_env(env_id).action_space
    space.seed(0)
    return float(
        np.mean(tfrl.evaluate(lambda batch: np.stack([space.sample() for _ in batch]), env_id, RANDOM_EPISODES))
    )


def constant_return(env_id: str) -> float:
    """The best mean return of one action played always (each discrete action; a Box's midpoint): a
    policy that beats random play only by doing nothing (MountainCarContinuous, Taxi, CliffWalking) is
    no learning, so a verdict needs to beat this too."""
    space = make_env(env_id).action_space
    if isinstance(space, gym.spaces.Discrete):
        actions = [space.start + index for index in range(int(space.n))]
    else:
        actions = [(np.asarray(space.low) + np.asarray(space.high)) / 2]
    means = []
    for action in actions:
        returns = tfrl.evaluate(lambda batch, action=action: np.stack([action] * len(batch)), env_id, 20)
        means.append(float(np.mean(returns)))
    return max(means)


def threshold(env_id: str) -> float | None:
    env = make_env(env_id)
    try:
        return None if env.spec is None else env.spec.reward_threshold
    finally:
        env.close()


def run_one(algorithm: str, env_id: str, seed: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result = tfrl.train(
            algorithm,
            env_id,
            seed=seed,
            total_steps=steps,
            eval_every=max(steps // 10, 1_000),
            logdir=Path(scratch) / "runs",
            export=False,
            progress=False,
        )
    return {
        "algorithm": algorithm,
        "env": env_id,
        "seed": seed,
        "steps": steps,
        "best_return": result.best_return,
        "env_steps": result.env_steps,
        "solved": result.solved,
        "wall_seconds": round(result.wall_seconds, 1),
    }


def verdict(mean_best: float, baseline: float, goal: float | None) -> str:
    """``solved`` at the threshold; ``learns`` when at least a quarter of the way from the baseline (the
    better of random play and one constant action) to the threshold (or, with no threshold, 20% of
    |baseline| above it); else ``no``."""
    if goal is not None and mean_best >= goal:
        return "solved"
    margin = 0.25 * (goal - baseline) if goal is not None and goal > baseline else 0.2 * max(abs(baseline), 1.0)
    return "learns" if mean_best >= baseline + margin else "no"


def table(results: dict, references: dict) -> str:
    lines = [
        "| algorithm | env | random | one action | threshold | best return per seed | mean | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pairs = sorted({(row["algorithm"], row["env"]) for row in results["runs"]})
    for algorithm, env_id in pairs:
        rows = [row for row in results["runs"] if (row["algorithm"], row["env"]) == (algorithm, env_id)]
        bests = [row["best_return"] for row in rows if row["best_return"] is not None]
        random, constant = references[env_id]["random"], references[env_id]["constant"]
        goal = references[env_id]["threshold"]
        mean = statistics.mean(bests) if bests else float("nan")
        lines.append(
            f"| {algorithm} | {env_id} | {random:.1f} | {constant:.1f} | {'-' if goal is None else goal} | "
            f"{', '.join(f'{best:.1f}' for best in bests)} | {mean:.1f} | {verdict(mean, max(random, constant), goal)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=sorted(ALGORITHMS))
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every env's budget")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    args = parser.parse_args()
    results = {"runs": [], "references": {}}
    if RESULTS.exists() and not args.fresh:
        results = json.loads(RESULTS.read_text())
    references = results["references"]
    for env_id in args.envs:
        reference = references.setdefault(env_id, {"random": random_return(env_id), "threshold": threshold(env_id)})
        if "constant" not in reference:
            reference["constant"] = constant_return(env_id)
    done = {(row["algorithm"], row["env"], row["seed"], row["steps"]) for row in results["runs"]}
    for env_id in args.envs:
        steps = int(BUDGETS[env_id] * args.budget_scale)
        for algorithm in args.algorithms:
            if algorithm in ("value-iteration", "policy-iteration") or not supports(algorithm, env_id):
                continue
            for seed in args.seeds:
                if (algorithm, env_id, seed, steps) in done:
                    continue
                start = time.perf_counter()
                results["runs"].append(run_one(algorithm, env_id, seed, steps))
                RESULTS.parent.mkdir(exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=2))
                print(
                    f"{algorithm} {env_id} seed {seed}: {results['runs'][-1]['best_return']} "
                    f"({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    print(table(results, references))


if __name__ == "__main__":
    main()
