"""Do the defaults learn what they were not tuned on? Every algorithm's default config on every gymnasium
classic-control and toy-text env it supports, a few seeds and a fixed budget per env; beside it, each
preset tuned for that env (``PRESET_ENVS``). The best-evaluated policy of each run is evaluated afresh
over 100 episodes (Blackjack: 2,000), on seeds training never evaluated on, so the table is not the
maximum of noisy in-training evaluations; it is set beside random play, the best single action and
the env's threshold (or a goal where gymnasium gives none).

    python benchmarks/defaults.py                                   # every pair, 3 seeds (hours on 2 cores)
    python benchmarks/defaults.py --algorithms dqn ppo --envs CartPole-v1 --seeds 0
    python benchmarks/defaults.py --budget-scale 0.1                # a tenth of each env's budget

Resumable: each finished run is added to ``results/defaults.json`` at once and is not run again while
its config and budget are the same (a changed default runs afresh; ``--fresh`` starts over). Seeds are
the outer loop, so an interrupted run has every pair's first seed. One run at a time, one thread.
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
from tfrl.agents import ALGORITHMS, get_agent, make_config
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
    "Blackjack-v1": 20_000,
    "Taxi-v4": 50_000,
    "CliffWalking-v1": 30_000,
}
# Goals where gymnasium registers no threshold: Pendulum's −200 is where the tuned agents of rl-zoo3 and
# the tutorials are called solved; CliffWalking's −13 is its shortest path to the goal (13 steps of −1).
GOALS = {"Pendulum-v1": -200.0, "CliffWalking-v1": -13.0}
FINAL_EPISODES = {"Blackjack-v1": 2_000}  # a hand's return is ±1: 100 hands leave a standard error of ~0.1
FINAL_SEED = 1_000_000  # far from the seeds of training's own evaluations (0, 1, ...)


def supports(algorithm: str, env_id: str) -> bool:
    """Whether ``algorithm``'s default config takes ``env_id``'s spaces (tfrl refuses the rest by name)."""
    try:
        build_agent(RunSettings(algorithm=algorithm, env_id=env_id), make_config(algorithm, "default", None))
    except EnvError:
        return False
    return True


def configs_for(algorithm: str, env_id: str) -> list[str]:
    """The default config and each preset tuned on ``env_id``."""
    return ["default", *get_agent(algorithm)[1].presets_for(env_id)]


def random_return(env_id: str) -> float:
    """The mean return of uniformly random actions over the episodes a final evaluation plays."""
    space = make_env(env_id).action_space
    space.seed(0)
    return float(
        np.mean(
            tfrl.evaluate(
                lambda batch: np.stack([space.sample() for _ in batch]), env_id, final_episodes(env_id), FINAL_SEED
            )
        )
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
        returns = tfrl.evaluate(
            lambda batch, action=action: np.stack([action] * len(batch)), env_id, final_episodes(env_id), FINAL_SEED
        )
        means.append(float(np.mean(returns)))
    return max(means)


def final_episodes(env_id: str) -> int:
    return FINAL_EPISODES.get(env_id, 100)


def goal(env_id: str) -> float | None:
    """The env's registered reward threshold, else ``GOALS``'s (None: neither)."""
    env = make_env(env_id)
    try:
        registered = None if env.spec is None else env.spec.reward_threshold
    finally:
        env.close()
    return GOALS.get(env_id) if registered is None else float(registered)


def run_one(algorithm: str, env_id: str, preset: str, seed: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result = tfrl.train(
            algorithm,
            env_id,
            preset=preset,
            seed=seed,
            total_steps=steps,
            eval_every=max(steps // 10, 1_000),
            logdir=Path(scratch) / "runs",
            export_dir=Path(scratch) / "export",
            progress=False,
        )
        final = None
        if result.export_path is not None:
            policy = tfrl.load_policy(result.export_path)
            final = tfrl.evaluate(policy, env_id, final_episodes(env_id), FINAL_SEED)
    return {
        "algorithm": algorithm,
        "env": env_id,
        "preset": preset,
        "config": make_config(algorithm, preset).to_dict(),
        "seed": seed,
        "steps": steps,
        "best_return": result.best_return,
        "final_return": None if final is None else float(np.mean(final)),
        "final_std": None if final is None else float(np.std(final)),
        "env_steps": result.env_steps,
        "solved": result.solved,
        "wall_seconds": round(result.wall_seconds, 1),
    }


def verdict(mean_return: float, baseline: float, target: float | None) -> str:
    """``solved`` at the target; ``learns`` when at least a quarter of the way from the baseline (the
    better of random play and one constant action) to the target (or, with no target, 20% of
    |baseline| above it); else ``no``."""
    if target is not None and mean_return >= target:
        return "solved"
    margin = 0.25 * (target - baseline) if target is not None and target > baseline else 0.2 * abs(baseline)
    return "learns" if mean_return >= baseline + margin else "no"


def table(results: dict) -> str:
    """One row per (algorithm, env, config): the fresh evaluation of each seed's best policy, their mean
    and the verdict, beside the env's references."""
    lines = [
        "| algorithm | env | config | random | one action | goal | return per seed | mean | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    references = results["references"]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in results["runs"]:
        groups.setdefault((row["algorithm"], row["env"], row["preset"]), []).append(row)
    for (algorithm, env_id, preset), rows in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        scores = [
            row["final_return"] for row in sorted(rows, key=lambda row: row["seed"]) if row["final_return"] is not None
        ]
        random, constant, target = (references[env_id][key] for key in ("random", "constant", "goal"))
        mean = statistics.mean(scores) if scores else float("nan")
        lines.append(
            f"| {algorithm} | {env_id} | {preset} | {random:.2f} | {constant:.2f} | {'-' if target is None else f'{target:g}'} | "
            f"{', '.join(f'{score:.2f}' for score in scores)} | {mean:.2f} | "
            f"{verdict(mean, max(random, constant), target)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=sorted(ALGORITHMS))
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every env's budget")
    parser.add_argument("--no-presets", action="store_true", help="the default configs only")
    parser.add_argument("--table", action="store_true", help="print the table of what is recorded; run nothing")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    args = parser.parse_args()
    results: dict = {"runs": [], "references": {}}
    if RESULTS.exists() and not args.fresh:
        results = json.loads(RESULTS.read_text())
    if args.table:
        print(table(results))
        return
    for env_id in args.envs:
        if env_id not in results["references"]:
            results["references"][env_id] = {
                "random": random_return(env_id),
                "constant": constant_return(env_id),
                "goal": goal(env_id),
            }
    done = [
        (row["algorithm"], row["env"], row["preset"], row["config"], row["seed"], row["steps"])
        for row in results["runs"]
    ]
    for seed in args.seeds:
        for env_id in args.envs:
            steps = int(BUDGETS[env_id] * args.budget_scale)
            for algorithm in args.algorithms:
                if algorithm in ("value-iteration", "policy-iteration") or not supports(algorithm, env_id):
                    continue
                for preset in configs_for(algorithm, env_id)[: 1 if args.no_presets else None]:
                    config = make_config(algorithm, preset).to_dict()
                    if (algorithm, env_id, preset, config, seed, steps) in done:
                        continue
                    start = time.perf_counter()
                    row = run_one(algorithm, env_id, preset, seed, steps)
                    results["runs"].append(row)
                    RESULTS.parent.mkdir(exist_ok=True)
                    RESULTS.write_text(json.dumps(results, indent=2))
                    print(
                        f"{algorithm} {env_id} {preset} seed {seed}: {row['final_return']} "
                        f"(best evaluation {row['best_return']}, {time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
    print(table(results))


if __name__ == "__main__":
    main()
