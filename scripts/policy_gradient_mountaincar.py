"""The tutorials' Policy Gradients chapter on MountainCar: REINFORCE where rewards are rare.

    python scripts/policy_gradient_mountaincar.py                    # the tutorial's settings, 10k-step episodes
    python scripts/policy_gradient_mountaincar.py --preset default   # tfrl's REINFORCE defaults instead

MountainCar pays −1 every step until the car reaches the flag. Under gymnasium's 200-step limit a
random policy almost never gets there, so REINFORCE sees identical returns and cannot learn. The
tutorial used the unwrapped env: an episode lasts until the flag, however long. This script
registers ``MountainCarLong-v0`` (episodes cut at 10,000 steps) and trains on it with the tutorial's
γ = 0.995 and one episode per update. Expect a long run: the tutorial's own log reads −10,667 at
episode 154, −2,009 at 387, −1,006 at 489 and −502 at 628 — millions of env steps, so the default
budget is 3M. (This script is not part of tfrl's benchmarks; its learning curve has not been measured.)
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import gymnasium as gym

import tfrl
from tfrl.logger import read_jsonl

ENV_ID = "MountainCarLong-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tutorial", choices=["default", "tutorial"])
    parser.add_argument("--steps", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    gym.register(
        ENV_ID,
        entry_point="gymnasium.envs.classic_control.mountain_car:MountainCarEnv",
        max_episode_steps=10_000,
        reward_threshold=-110.0,
    )
    overrides = {"gamma": 0.995} if args.preset == "tutorial" else {}
    result = tfrl.train(
        "reinforce",
        ENV_ID,
        preset=args.preset,
        overrides=overrides,
        seed=args.seed,
        total_steps=args.steps,
        num_envs=1 if args.preset == "tutorial" else None,
        eval_every=50_000,
        eval_episodes=5,
    )

    print("\ntraining episodes (every 10th: env step, return)")
    for row in read_jsonl(result.run_dir / "episodes.jsonl")[::10]:
        print(f"  {row['step']:>8}: {row['return']:8.0f}")
    print("evaluations (env step: mean return over 5 greedy episodes)")
    for row in read_jsonl(result.run_dir / "evaluations.jsonl"):
        print(f"  {row['step']:>8}: {row['mean']:8.1f}")
    print(f"policy: {result.export_path}")


if __name__ == "__main__":
    main()
