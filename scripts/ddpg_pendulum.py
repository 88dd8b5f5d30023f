"""The tutorials' DDPG on Pendulum-v1 (DDPG_update.py), with tfrl doing the bookkeeping.

    python scripts/ddpg_pendulum.py                        # the original hyperparameters, 40k steps
    python scripts/ddpg_pendulum.py --preset default       # tfrl's tuned default: about -155 within 8k steps
    python scripts/ddpg_pendulum.py --algorithm td3        # twin critics, target smoothing, delayed actor

The tutorial preset keeps DDPG_update.py's settings: 30 hidden units, actor/critic learning rates
0.001/0.002, γ 0.9, τ 0.01, a 10k memory filled before learning starts, batch 32, exploration
noise N(0, 3) decaying ×0.9995 per step, rewards divided by 10 for learning. Pendulum's
episodes end by a time limit (truncation), so their last transition still bootstraps.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default="ddpg", choices=["ddpg", "td3"])
    parser.add_argument("--preset", default="tutorial", choices=["tutorial", "default"])
    parser.add_argument("--steps", type=int, default=40_000, help="env steps (the tutorial ran 200 episodes of 200)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    result = tfrl.train(args.algorithm, "Pendulum-v1", preset=args.preset, seed=args.seed, total_steps=args.steps)
    print("\n" + evaluation_curve_text(result.run_dir))
    print(
        f"{result.env_steps} env steps in {result.wall_seconds:.1f}s ({result.train_steps_per_second:.0f} training steps/s)"
    )

    policy = tfrl.load_policy(result.export_path)
    returns = tfrl.evaluate(policy, "Pendulum-v1", episodes=10, seed=2024)
    print(f"exported policy {result.export_path}: mean return {returns.mean():.1f} over 10 new episodes")


if __name__ == "__main__":
    main()
