"""DDPG and TD3 on Pendulum-v1: the return reached within 20k env steps, wall time and throughput.

Pendulum-v1 has no reward threshold, so each run trains for all its steps; the table reports when
the mean deterministic evaluation return over 20 episodes first reached -200, and the final one.
Targets: both algorithms >= -200 on 5/5 seeds, median wall time for the 20k steps <= 60 s.
Prints the tables and writes ``results/ddpg_pendulum.json``.

    python benchmarks/ddpg_pendulum.py
    python benchmarks/ddpg_pendulum.py --algorithms td3 --seeds 0
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split
from common import arguments, report, run_seeds


def main() -> None:
    parser = arguments(__doc__, steps=20_000)
    parser.add_argument("--algorithms", nargs="+", default=["ddpg", "td3"])
    args = parser.parse_args()
    rows = [row for algorithm in args.algorithms for row in run_seeds(algorithm, "Pendulum-v1", -200.0, args)]
    report("ddpg_pendulum", "Pendulum-v1", -200.0, rows, args)


if __name__ == "__main__":
    main()
