"""The tutorials' A3C-RNN on Pendulum: a recurrent state carried between steps, reset at episode ends.

    python scripts/a3c_rnn.py                        # a3c-rnn with the `pendulum` preset
    python scripts/a3c_rnn.py --preset tutorial-rnn  # A3C_RNN.py's numbers (64-unit cell, push every 5 steps)

What happens: a GRU cell reads each observation and its state from the previous step; the actor
and critic heads sit on its output. Workers carry the state through their episodes and zero it when
one ends; each rollout's gradients flow back through the cell from the state the rollout started in.
The exported policy's ``action`` takes ``(observation, state)`` and returns the action and the next
state; ``initial_state(batch_size)`` gives the zeros an episode starts from, and ``tfrl.load_policy``
keeps the state for you.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse

import numpy as np

import tfrl
from tfrl.logger import evaluation_curve_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="pendulum", choices=["pendulum", "tutorial-rnn"])
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    result = tfrl.train(
        "a3c-rnn",
        "Pendulum-v1",
        preset=args.preset,
        overrides={"workers": args.workers},
        seed=args.seed,
        total_steps=args.steps,
        eval_every=20_000,
    )
    print("\n" + evaluation_curve_text(result.run_dir))
    print(f"final evaluation {result.final_return:.1f} after {result.env_steps} env steps, {result.wall_seconds:.1f}s")

    policy = tfrl.load_policy(result.export_path)
    env = tfrl.make_env("Pendulum-v1")
    observation, _ = env.reset(seed=2024)
    policy.reset_state(1)
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(policy(observation))
        total += reward
        done = terminated or truncated
    print(
        f"exported policy ({result.export_path}, state shape {policy.state_shape}): one episode returns {total:.1f}; "
        f"greedy mean over 10 episodes {np.mean(tfrl.evaluate(policy, 'Pendulum-v1', episodes=10, seed=2024)):.1f}"
    )


if __name__ == "__main__":  # the guard matters: worker processes are spawned and import this file
    main()
