"""The tutorials' continuous-action A3C on Pendulum, with worker processes that fill every core.

    python scripts/a3c_continuous.py                               # the `pendulum` preset
    python scripts/a3c_continuous.py --preset tutorial-continuous  # A3C_continuous_action.py's numbers

What happens: each worker's Gaussian actor (mean = 2·tanh, scale softplus + floor) samples torques
on its own Pendulum; rewards are learned from as (r + 8) / 8, as in the tutorial (logged returns
stay in the env's units). Every ``update_every`` steps a worker sends the gradients of its rollout
to the parent, which applies them with the global optimizers and shares the new weights. Pendulum
has no reward threshold, so the run trains for ``--steps``; the tutorials' plots stop near −400.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="pendulum", choices=["pendulum", "tutorial-continuous"])
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    result = tfrl.train(
        "a3c",
        "Pendulum-v1",
        preset=args.preset,
        overrides={"workers": args.workers},
        seed=args.seed,
        total_steps=args.steps,
        eval_every=20_000,
    )
    print("\n" + evaluation_curve_text(result.run_dir))
    print(f"final evaluation {result.final_return:.1f} after {result.env_steps} env steps, {result.wall_seconds:.1f}s")
    print(f"policy: {result.export_path}")


if __name__ == "__main__":  # the guard matters: worker processes are spawned and import this file
    main()
