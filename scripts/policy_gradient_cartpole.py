"""The tutorials' Policy Gradients chapter: REINFORCE on CartPole, with tfrl doing the bookkeeping.

    python scripts/policy_gradient_cartpole.py                    # batches of 8 episodes: solves in ~15-45k steps
    python scripts/policy_gradient_cartpole.py --preset tutorial  # the original: 10 tanh units, one episode per update

What happens: a softmax policy plays whole episodes in 8 envs side by side. Each time 8 episodes
are complete, every action taken is made more likely in proportion to the (normalised) discounted
return that followed it — one gradient step on −log π(a|s)·v_t. The run stops once the greedy
policy (argmax) averages 475 over 20 evaluation episodes, and the policy is exported.
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

    # The tutorial updates after every episode of a single env.
    num_envs = 1 if args.preset == "tutorial" else None
    result = tfrl.train(
        "reinforce", "CartPole-v1", preset=args.preset, seed=args.seed, total_steps=args.steps, num_envs=num_envs
    )

    print("\n" + evaluation_curve_text(result.run_dir))
    print(
        f"{'solved' if result.solved else 'not solved'} after {result.env_steps} env steps, {result.wall_seconds:.1f}s"
    )

    # The exported policy samples too: compare its greedy and stochastic play.
    policy = tfrl.load_policy(result.export_path)
    greedy = tfrl.evaluate(policy, "CartPole-v1", episodes=10, seed=2024)
    sampled = tfrl.evaluate(policy.sample_action, "CartPole-v1", episodes=10, seed=2024)
    print(f"exported policy ({result.export_path}): greedy {np.mean(greedy):.0f}, sampled {np.mean(sampled):.0f}")


if __name__ == "__main__":
    main()
