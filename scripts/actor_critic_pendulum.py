"""The tutorials' continuous Actor-Critic on Pendulum: a Gaussian policy, and why the original oscillates.

    python scripts/actor_critic_pendulum.py                               # the tuned `pendulum` preset
    python scripts/actor_critic_pendulum.py --preset tutorial-continuous  # the original, one env, one-step updates

What happens: the actor outputs a Gaussian over the torque — mean 2·tanh(·), so it stays inside
[−2, 2], and a positive scale. Sampled torques are clipped to the bounds for the env; learning uses
the log-probability of the unclipped sample. The original (``AC_continue_Pendulum.py``, "cannot
converge, oscillate") updates after every step from a one-step TD error with a state-dependent
scale. The ``pendulum`` preset learns from 8-step rollouts of 8 envs with normalised advantages and
one learned scale per action dimension. Rewards are scaled by 0.1 only inside the learning step;
the returns printed are Pendulum's own (about −1,200 for a random policy, −150 for a good one).
Pendulum has no reward threshold, so the run goes on for ``--steps``.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="pendulum", choices=["pendulum", "tutorial-continuous"])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    num_envs = 1 if args.preset == "tutorial-continuous" else None
    result = tfrl.train(
        "actor-critic",
        "Pendulum-v1",
        preset=args.preset,
        seed=args.seed,
        total_steps=args.steps,
        num_envs=num_envs,
        eval_every=10_000,
    )

    print("\n" + evaluation_curve_text(result.run_dir))
    policy = tfrl.load_policy(result.export_path)
    print(
        f"exported policy ({result.export_path}): endpoints {', '.join(policy.endpoints)}; "
        f"torque at the bottom, at rest: {float(policy([-1.0, 0.0, 0.0])[0]):+.2f}"
    )


if __name__ == "__main__":
    main()
