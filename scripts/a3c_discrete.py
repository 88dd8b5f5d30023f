"""The tutorials' A3C on CartPole, with worker processes that fill every core.

    python scripts/a3c_discrete.py                    # one worker per core; solves CartPole-v1
    python scripts/a3c_discrete.py --preset tutorial  # A3C_discrete_action.py's numbers (RMSProp, γ 0.9, 200/100 relu6)
    python scripts/a3c_discrete.py --workers 1        # compare the throughput of one worker

What happens: each worker process has its own CartPole and its own copy of the actor and critic.
Every ``update_every`` steps it computes the gradients of its rollout's advantage actor-critic loss
and sends them to the parent, which applies them to the global networks and shares the new weights;
the worker copies them and plays on. The parent logs every episode under one global count, each
worker's env steps per second (TensorBoard: train/worker_<i>/env_steps_per_second), evaluates the
global policy and stops once it averages 475 over 20 greedy episodes.
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
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    result = tfrl.train(
        "a3c",
        "CartPole-v1",
        preset=args.preset,
        overrides={"workers": args.workers},
        seed=args.seed,
        total_steps=args.steps,
    )
    print("\n" + evaluation_curve_text(result.run_dir))
    print(
        f"{'solved' if result.solved else 'not solved'} after {result.env_steps} env steps, "
        f"{result.wall_seconds:.1f}s ({result.train_steps_per_second:.0f} env steps/s, all workers)"
    )
    policy = tfrl.load_policy(result.export_path)
    returns = tfrl.evaluate(policy, "CartPole-v1", episodes=10, seed=2024)
    print(f"exported policy ({result.export_path}): greedy return over 10 episodes {np.mean(returns):.0f}")


if __name__ == "__main__":  # the guard matters: worker processes are spawned and import this file
    main()
