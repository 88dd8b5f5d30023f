"""Soft Actor-Critic on Pendulum-v1: continuous control with an entropy bonus that tunes itself.

    python scripts/sac_pendulum.py                  # about -150 within 5k env steps
    python scripts/sac_pendulum.py --steps 50000 --seed 3

What happens: a squashed Gaussian actor samples torques, twin critics learn the soft value (reward plus
the policy's entropy, weighted by a temperature α), and α itself is learned to hold the policy's entropy
near a target of −1 per action dimension: exploration fades by itself as the actor grows sure. Each training call runs its gradient steps
inside one compiled TensorFlow call. The exported policy's ``action`` is the squashed mean torque,
``sample_action`` a sample, ``value`` the smaller twin Q of the action.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps (rl-zoo3 gives SAC 20k here)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    result = tfrl.train("sac", "Pendulum-v1", seed=args.seed, total_steps=args.steps)
    print("\n" + evaluation_curve_text(result.run_dir))
    print(
        f"{result.env_steps} env steps in {result.wall_seconds:.1f}s ({result.train_steps_per_second:.0f} training steps/s)"
    )

    policy = tfrl.load_policy(result.export_path)
    returns = tfrl.evaluate(policy, "Pendulum-v1", episodes=10, seed=2024)
    observation, _ = tfrl.make_env("Pendulum-v1").reset(seed=2024)
    print(
        f"exported policy {result.export_path}: mean return {returns.mean():.1f} over 10 new episodes; "
        f"soft Q of the first state's action {float(policy.value(observation)):.1f}"
    )


if __name__ == "__main__":
    main()
