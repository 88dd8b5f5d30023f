"""The tutorials' DQN on CartPole, with tfrl doing the bookkeeping.

    python scripts/dqn_cartpole.py                    # the tuned default: solves in ~30k steps
    python scripts/dqn_cartpole.py --preset tutorial  # the original TF1 tutorial's hyperparameters

What happens: an ε-greedy agent fills a replay memory, and every 256 env steps (default preset)
128 Q-learning updates run against a target network that is copied once per training call. The
run stops once the greedy policy averages 475 over 20 evaluation episodes, then the policy is
exported as a SavedModel that plain TensorFlow can load.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import tensorflow as tf

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=["default", "tutorial"])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    result = tfrl.train("dqn", "CartPole-v1", preset=args.preset, seed=args.seed, total_steps=args.steps)

    print("\n" + evaluation_curve_text(result.run_dir))
    print(
        f"{'solved' if result.solved else 'not solved'} after {result.env_steps} env steps, "
        f"{result.wall_seconds:.1f}s, {result.train_steps_per_second:.0f} training steps/s"
    )

    # The export needs nothing from tfrl: plain TensorFlow loads and runs it.
    policy = tf.saved_model.load(str(result.export_path))
    env = tfrl.make_env("CartPole-v1")
    observation, _ = env.reset(seed=2024)
    total, done = 0.0, False
    while not done:
        action = int(policy.action(observation[None])[0])
        observation, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    print(f"one episode of the exported policy ({result.export_path}): return {total:.0f}")


if __name__ == "__main__":
    main()
