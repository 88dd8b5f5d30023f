"""Solve FrozenLake-v1 exactly, export the greedy policy, and check it in the real environment.

The model comes from the environment itself (``env.unwrapped.P``). We use γ = 1: FrozenLake pays 1
on reaching the goal and 0 otherwise, so with γ = 1 the value of the start state is exactly the
probability of ever reaching the goal, the number a success rate measures (γ = 0.99 would give a
discounted success instead, and a greedy policy that trades success for speed). The environment
stops episodes after 100 steps, so the solver's prediction for the real env is the success
probability within 100 steps, ``horizon_values`` of the induced chain; the unlimited value is also
checked by lifting the step limit.

The policy is written as a SavedModel to ``exports/value-iteration-FrozenLake-v1`` (``--out``), reloaded
with plain ``tf.saved_model.load`` and played for many seeded episodes in lock-step.

Run: ``python scripts/frozenlake_exact.py [--episodes 2000] [--seed 0]``
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split
import argparse
import functools

import gymnasium as gym
import tensorflow as tf

from tfrl.envs import describe_space
from tfrl.mdp import (
    MarkovDecisionProcess,
    export_tabular_policy,
    horizon_values,
    run_episodes,
    value_iteration,
    wilson_interval,
)

ENV_ID = "FrozenLake-v1"
UNLIMITED_STEPS = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per check (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (default 0)")
    parser.add_argument("--out", default=f"exports/value-iteration-{ENV_ID}", help="SavedModel directory")
    args = parser.parse_args()

    env = gym.make(ENV_ID, is_slippery=True)
    mdp = MarkovDecisionProcess.from_gymnasium(env, gamma=1.0)
    solution = value_iteration(mdp, tol=1e-12)
    n = env.observation_space.n
    start = env.reset(seed=args.seed)[0]
    chain = mdp.to_mrp(mdp.deterministic_policy(solution.policy))
    limit = env.spec.max_episode_steps
    predicted = {steps: horizon_values(chain, steps)[start] for steps in (limit, UNLIMITED_STEPS)}
    print(f"{ENV_ID} (is_slippery=True): {mdp.num_states - 1} states + absorbing terminal, γ = 1")
    print(f"value iteration: {solution.sweeps} sweeps, Bellman residual {solution.residual:.1e}")
    print(f"V*(start) = P(reach the goal) = {solution.values[start]:.6f}")
    print(f"greedy policy (0=left 1=down 2=right 3=up):\n{solution.policy[:n].reshape(4, 4)}")

    metadata = {
        # the keys of a tfrl export (tfrl.export.read_metadata), so tfrl evaluate / record / load_policy take it
        "format": "tfrl-policy",
        "endpoints": ["action", "q_values"],
        "algorithm": "value-iteration",
        "env_id": ENV_ID,
        "env_kwargs": {"is_slippery": True},
        "observation_space": describe_space(env.observation_space),
        "action_space": describe_space(env.action_space),
        "observation_dtype": "float32",
        "env_steps": 0,
        "config": {"gamma": mdp.gamma, "tol": 1e-12},
        "gamma": mdp.gamma,
        "sweeps": solution.sweeps,
        "bellman_residual": solution.residual,
        "value_of_start": float(solution.values[start]),
        "predicted_success": {f"{steps}_steps": float(p) for steps, p in predicted.items()},
    }
    path = export_tabular_policy(solution.policy[:n], args.out, metadata, q_values=solution.q_values[:n])
    policy = tf.saved_model.load(str(path))
    print(f"exported to {path} and reloaded with tf.saved_model.load")

    print(f"\n{'step limit':>10}  {'predicted':>9}  {'measured':>8}  95% interval ({args.episodes} episodes)")
    for steps, p in predicted.items():
        returns = run_episodes(
            functools.partial(gym.make, ENV_ID, is_slippery=True, max_episode_steps=steps),
            lambda observations: policy.action(observations).numpy(),
            args.episodes,
            seed=args.seed,
        )
        low, high = wilson_interval(int(returns.sum()), args.episodes)
        verdict = "inside" if low <= p <= high else "OUTSIDE"
        print(f"{steps:>10}  {p:>9.4f}  {returns.mean():>8.4f}  [{low:.4f}, {high:.4f}]  prediction {verdict}")


if __name__ == "__main__":
    main()
