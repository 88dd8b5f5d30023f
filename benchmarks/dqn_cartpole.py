"""DQN on CartPole-v1: env steps and wall time to solve, training throughput, over seeds.

Solved = the mean deterministic evaluation return over 20 episodes reaches 475 (the env's
reward_threshold, where training stops). Prints a table and writes ``results/dqn_cartpole.json``.
Targets: 5/5 seeds within 50k env steps, median wall time to solve <= 30 s, >= 2,000 env steps/s.

    python benchmarks/dqn_cartpole.py
    python benchmarks/dqn_cartpole.py --seeds 0 1 --set learning_rate=1e-3
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split
from common import arguments, report, run_seeds


def main() -> None:
    args = arguments(__doc__, steps=50_000).parse_args()
    rows = run_seeds("dqn", "CartPole-v1", 475.0, args)
    report("dqn_cartpole", "CartPole-v1", 475.0, rows, args)


if __name__ == "__main__":
    main()
