"""Sum-tree speed: sampling a batch from, and updating priorities in, a prioritized replay memory.

Times ``SumTree.find`` (one stratified batch: the descent of every sample at once, level by level),
``SumTree.update`` (leaves, then their parents level by level) and the full
``PrioritizedReplayBuffer.sample`` (tree descent + importance weights + gathering the rows) at
several memory sizes, for the batch of 64 the issue asks about and for the 128 × 64 rows one
default DQN training call draws. Prints a table and writes ``benchmarks/results/sum_tree.json``
with the machine's load average beside the timings (the machine may be shared).

    python benchmarks/sum_tree.py
    python benchmarks/sum_tree.py --sizes 1000000 --repeats 2000
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split
import argparse
import functools
import json
import os
import platform
import time
import timeit
from pathlib import Path

import numpy as np

from tfrl.replay import PrioritizedReplayBuffer


def best_microseconds(function, repeats: int) -> tuple[float, float]:
    """Median and best time per call in µs, over ``repeats`` timed calls (after a warm-up)."""
    function()
    times = np.array(timeit.repeat(function, number=1, repeat=repeats)) * 1e6
    return float(np.median(times)), float(times.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sum_tree.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    rows = []
    for size in args.sizes:
        memory = PrioritizedReplayBuffer(size, (4,))
        start = time.perf_counter()
        chunk = 100_000
        for first in range(0, size, chunk):
            count = min(chunk, size - first)
            memory.add(
                np.zeros((count, 4)), np.zeros(count, np.int64), np.zeros(count), np.zeros((count, 4)), np.zeros(count)
            )
        memory.update_priorities(np.arange(size), rng.exponential(size=size))
        fill_seconds = time.perf_counter() - start
        tree = memory.tree
        for batch, batches in ((64, 1), (64, 128)):
            count = batch * batches
            values = rng.uniform(0, tree.total, count)
            indices = rng.integers(0, size, count)
            priorities = rng.exponential(size=count)
            timings = {
                "find": best_microseconds(functools.partial(tree.find, values), args.repeats),
                "update": best_microseconds(functools.partial(tree.update, indices, priorities), args.repeats),
                "memory.sample": best_microseconds(
                    functools.partial(memory.sample, batch, batches, rng, 0.4), args.repeats
                ),
                "memory.update_priorities": best_microseconds(
                    functools.partial(memory.update_priorities, indices, priorities), args.repeats
                ),
            }
            for operation, (median, best) in timings.items():
                rows.append(
                    {
                        "stored": size,
                        "rows": count,
                        "operation": operation,
                        "median_us": round(median, 1),
                        "best_us": round(best, 1),
                    }
                )
        rows.append(
            {
                "stored": size,
                "rows": size,
                "operation": "fill (add + first priorities)",
                "median_us": round(fill_seconds * 1e6, 1),
                "best_us": round(fill_seconds * 1e6, 1),
            }
        )
    load_after = os.getloadavg()

    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1 min), {os.cpu_count()} cores")
    print("\n| stored | rows | operation | median µs | best µs |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['stored']:,} | {row['rows']:,} | {row['operation']} | {row['median_us']} | {row['best_us']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                "repeats": args.repeats,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
