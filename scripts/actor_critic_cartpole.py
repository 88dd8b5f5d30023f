"""The tutorials' Actor-Critic chapter on CartPole: the one-step original and a stable advantage actor-critic.

    python scripts/actor_critic_cartpole.py                    # 8-step rollouts from 8 envs: solves in ~15-35k steps
    python scripts/actor_critic_cartpole.py --preset tutorial  # the original one-step online updates, one env

What happens: the actor samples actions, the critic learns V(s). The tutorial updates both after
every single step from the TD error r + γV(s') − V(s), which makes consecutive updates strongly
correlated — its header warns that the policy oscillates. The default collects 8 steps from each of
8 envs, uses n-step returns as critic targets and their gap to V(s) as the actor's advantage, adds a
small entropy bonus and clips gradient norms. The run stops once the greedy policy averages 475 over
20 evaluation episodes, and the policy (with a ``value`` endpoint for the critic) is exported.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import numpy as np

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=["default", "tutorial"])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    num_envs = 1 if args.preset == "tutorial" else None  # the tutorial: one env, one update per step
    result = tfrl.train(
        "actor-critic", "CartPole-v1", preset=args.preset, seed=args.seed, total_steps=args.steps, num_envs=num_envs
    )

    print("\n" + evaluation_curve_text(result.run_dir))
    print(
        f"{'solved' if result.solved else 'not solved'} after {result.env_steps} env steps, {result.wall_seconds:.1f}s"
    )

    policy = tfrl.load_policy(result.export_path)
    observation, _ = tfrl.make_env("CartPole-v1").reset(seed=2024)
    print(
        f"exported policy ({result.export_path}): action {policy(observation)}, "
        f"critic's value of the start state {float(policy.value(observation)):.1f}, "
        f"greedy return over 10 episodes {np.mean(tfrl.evaluate(policy, 'CartPole-v1', episodes=10, seed=2024)):.0f}"
    )


if __name__ == "__main__":
    main()
