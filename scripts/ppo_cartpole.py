"""The tutorials' PPO chapter on CartPole: the simple PPO of simply_PPO.py, and PPO as libraries run it.

    python scripts/ppo_cartpole.py                      # tfrl's tuned default: solves in ~5-15k steps
    python scripts/ppo_cartpole.py --preset tutorial    # simply_PPO.py's settings, one env
    python scripts/ppo_cartpole.py --set loss=kl_penalty # the tutorial's other surrogate: an adaptive KL penalty

What happens: the actor samples actions for a rollout; the critic's V(s) turns its rewards into GAE
advantages. The update then takes several passes over the rollout, each step raising the probability
ratio π/π_old of good actions, but the clipped surrogate gives nothing for moving it past 1 ± 0.2, so
one batch cannot push the policy far. The default gathers 32 steps from each of 4 envs and takes 20
passes, all in one compiled TensorFlow call; the run stops once the greedy policy averages 475 over
20 evaluation episodes, and the policy (with a ``value`` endpoint for the critic) is exported.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import numpy as np

import tfrl
from tfrl.cli import parse_overrides
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=["default", "tutorial"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    num_envs = 1 if args.preset == "tutorial" else None  # the tutorial: one env, an update every 32 steps
    result = tfrl.train(
        "ppo",
        "CartPole-v1",
        preset=args.preset,
        overrides=parse_overrides(args.overrides),
        seed=args.seed,
        total_steps=args.steps,
        num_envs=num_envs,
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
