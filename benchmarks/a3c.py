"""A3C: throughput with 1 and 2 worker processes, CartPole-v1 (steps and wall time to solve), Pendulum-v1.

Throughput is env steps per second of the whole run (all workers), measured at steady state: from
the episodes the run logs, between the first one past half the steps and the last one, so the
seconds the workers take to start (each imports TensorFlow, and they start at different times) do
not count. The target is ≥ 1.7× from
1 to 2 workers on a 2-core machine; the load average is recorded beside it, since other processes
take cores away. CartPole-v1 is solved when the greedy policy's mean over 20 evaluation episodes
reaches 475; Pendulum-v1 runs for ``--pendulum-steps`` and reports when the evaluation mean first
reached −300. Writes ``benchmarks/results/a3c_*.json``.

``--backend ray`` measures the Ray backend beside the process backend in the same run: steady env
steps per second with 1 and 2 workers on each (a new local Ray cluster per Ray run), and how many
updates per second the driver alone applies, with workers that return pre-made gradients at once
(targets: Ray ≥ 0.85× processes with 2 workers, 1 → 2 workers ≥ 1.6×, the driver ≥ 1,000 updates/s).
CartPole's weights are small, so Ray runs them over direct connections (``RayDirectPool``); the row
``ray (object store)`` forces the pool that large networks get (``RayPool``: a Ray call per step).

    python benchmarks/a3c.py --parts throughput
    python benchmarks/a3c.py --parts cartpole pendulum --seeds 0 1 2 3 4
    python benchmarks/a3c.py --backend ray
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator

import numpy as np
from common import RESULTS, arguments, report, run_seeds, wait_for_quiet_cpus

import tfrl
from tfrl import pools
from tfrl.agents import make_config
from tfrl.agents.a3c import WorkerMessage, WorkerSpec
from tfrl.logger import read_jsonl
from tfrl.pools import cluster
from tfrl.training import RunSettings, build_agent


def steady_throughput(run_dir, total_steps: int) -> float:
    """Env steps per second between the first episode past half the run and the last one."""
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    first = next(row for row in episodes if row["step"] >= total_steps // 2)
    last = episodes[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"])


# The classic A3C (one env per worker, a push every 10 steps: the parent applies an update for every
# 10 env steps) and workers that act for 4 envs in one call (a push every 40 env steps).
SETTINGS = {"1 env per worker": {}, "4 envs per worker": {"envs_per_worker": 4}}


def throughput(steps: int, repeats: int) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for repeat in range(repeats):
            for setting, overrides in SETTINGS.items():
                for workers in (1, 2):
                    load_before = os.getloadavg()[0]
                    started = time.perf_counter()
                    result = tfrl.train(
                        "a3c",
                        "CartPole-v1",
                        seed=repeat,
                        total_steps=steps,
                        eval_every=10 * steps,
                        eval_episodes=1,
                        stop_at_threshold=False,
                        overrides={"workers": workers, **overrides},
                        logdir=logdir,
                        export=False,
                        progress=False,
                    )
                    rows.append(
                        {
                            "setting": setting,
                            "workers": workers,
                            "repeat": repeat,
                            "env_steps_per_second": round(steady_throughput(result.run_dir, steps)),
                            "wall_seconds": round(time.perf_counter() - started, 1),
                            "load_average_before": round(load_before, 2),
                            "load_average_after": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(rows[-1], flush=True)
    summary = {"cores": os.cpu_count()}
    for setting in SETTINGS:
        best = {
            workers: max(
                row["env_steps_per_second"] for row in rows if row["workers"] == workers and row["setting"] == setting
            )
            for workers in (1, 2)
        }
        summary[setting] = {"best_env_steps_per_second": best, "speedup_2_over_1": round(best[2] / best[1], 2)}
        print(
            f"\nthroughput, {setting} (env steps/s, steady state, CartPole-v1): 1 worker {best[1]}, 2 workers "
            f"{best[2]}, speed-up {best[2] / best[1]:.2f}x on {os.cpu_count()} cores"
        )
    print(f"load average now {os.getloadavg()[0]:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "a3c_throughput.json").write_text(
        json.dumps({"benchmark": "a3c_throughput", "steps": steps, "runs": rows, "summary": summary}, indent=2)
    )
    return summary


# What each row of the comparison runs: the backend, and whether Ray may use direct connections.
POOLS = {"process": ("process", True), "ray": ("ray", True), "ray (object store)": ("ray", False)}


@contextlib.contextmanager
def pools_for(row: str) -> Iterator[str]:
    """The backend of ``row``; for ``ray (object store)``, ``RayPool`` whatever the size of the weights."""
    backend, direct = POOLS[row]
    limit = pools.RAY_DIRECT_MAX_BYTES
    pools.RAY_DIRECT_MAX_BYTES = limit if direct else -1
    try:
        yield backend
    finally:
        pools.RAY_DIRECT_MAX_BYTES = limit


def backends(steps: int) -> list[dict]:
    """Steady env steps/s of every row of ``POOLS``, 1 and 2 workers, one env each, side by side."""
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for workers in (1, 2):
            for row in POOLS:
                busy_before = wait_for_quiet_cpus()
                load_before = os.getloadavg()[0]
                with pools_for(row) as backend:
                    result = tfrl.train(
                        "a3c",
                        "CartPole-v1",
                        total_steps=steps,
                        eval_every=10 * steps,
                        eval_episodes=1,
                        stop_at_threshold=False,
                        overrides={"workers": workers},
                        backend=backend,
                        logdir=logdir,
                        export=False,
                        progress=False,
                    )
                rows.append(
                    {
                        "backend": row,
                        "workers": workers,
                        "env_steps_per_second": round(steady_throughput(result.run_dir, steps)),
                        "cpu_busy_before": round(busy_before, 2),
                        "load_average_before": round(load_before, 2),
                        "load_average_after": round(os.getloadavg()[0], 2),
                    }
                )
                print(rows[-1], flush=True)
    return rows


DRIVER_WORKERS = 8  # fake workers for the driver's rate: always one waiting, so the driver never idles
# Untimed seconds once every worker has started: the driver compiles its update for each size of batch
# it meets (a few times per run), and a new actor's first calls are slow.
DRIVER_WARMUP_SECONDS = 3.0


class PremadeGradients:
    """A worker that returns the same pre-made gradients at once: what is left is the driver's own cost
    (receive, apply with the global optimizers, publish the weights, let the worker go on)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.message: WorkerMessage | None = None
        self.spec = spec

    def __call__(self, weights: np.ndarray) -> WorkerMessage:
        if self.message is None:
            gradients = np.random.default_rng(self.spec.seed).normal(0, 1e-3, weights.size).astype(np.float32)
            self.message = (gradients, self.spec.config.update_every, [], 1e-3, np.zeros(3, np.float32), None)
        return self.message


def driver_rate(row: str, workers: int, seconds: float) -> dict[str, float]:
    """Updates per second ``A3CAgent.update_stream`` applies from ``workers`` workers that send pre-made gradients
    (a quarter of a CPU each on Ray: they return at once, and enough of them keep the driver busy), timed
    from ``DRIVER_WARMUP_SECONDS`` after every worker has sent an update.

    ``updates_per_second`` is the wall-clock rate on this machine, where the fake workers and Ray's own
    processes share the two cores with the driver; ``updates_per_driver_cpu_second`` divides the updates
    by the CPU time of the driver process alone (all its threads), the rate it could keep up if its
    workers ran on other machines."""
    backend = POOLS[row][0]
    settings = RunSettings("a3c", "CartPole-v1", backend=backend)
    overrides = {"workers": workers, "worker_cpus": 0.25}
    agent = build_agent(settings, make_config("a3c", overrides=overrides))
    agent.worker = PremadeGradients
    with pools_for(row), cluster(backend):
        updates = agent.update_stream(settings, 0, print)
        metrics = next(updates)[2]
        while sum(key.startswith("worker_") for key in metrics) < workers:
            metrics = next(updates)[2]  # until every worker has started and sent its first update
        warm_until = time.perf_counter() + DRIVER_WARMUP_SECONDS
        while time.perf_counter() < warm_until:
            metrics = next(updates)[2]
        start, cpu_start, first_update = time.perf_counter(), time.process_time(), metrics["global_step"]
        while time.perf_counter() - start < seconds:
            metrics = next(updates)[2]
        count = metrics["global_step"] - first_update  # a yield may hold several updates applied together
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        updates.close()
    return {"updates_per_second": count / wall, "updates_per_driver_cpu_second": count / cpu}


def compare_backends(steps: int, driver_seconds: float) -> None:
    rows = backends(steps)
    speed = {(row["backend"], row["workers"]): row["env_steps_per_second"] for row in rows}
    driver = {}
    for row in POOLS:
        wait_for_quiet_cpus()
        driver[row] = driver_rate(row, DRIVER_WORKERS, driver_seconds)
    driver = {backend: {key: round(value) for key, value in rates.items()} for backend, rates in driver.items()}
    load = os.getloadavg()
    print(f"\nA3C on CartPole-v1, 1 env per worker, {os.cpu_count()} cores, load average {load[0]:.2f} now\n")
    print(
        "| backend | 1 worker (env steps/s) | 2 workers (env steps/s) | 1 → 2 workers "
        f"| driver, {DRIVER_WORKERS} fake workers on this machine (updates/s) | driver per CPU second (updates) |"
    )
    print("|---|---|---|---|---|---|")
    for row in POOLS:
        one, two = speed[row, 1], speed[row, 2]
        rates = driver[row]
        print(
            f"| {row} | {one} | {two} | {two / one:.2f}x | {rates['updates_per_second']} "
            f"| {rates['updates_per_driver_cpu_second']} |"
        )
    ratio = speed["ray", 2] / speed["process", 2]
    print(f"\nRay / process with 2 workers: {ratio:.2f}x (target ≥ 0.85)")
    print(f"Ray through the object store / process: {speed['ray (object store)', 2] / speed['process', 2]:.2f}x")
    ray_driver = driver["ray"]["updates_per_driver_cpu_second"]
    print(f"one Ray driver keeps about {ray_driver // 10} workers busy at 10 updates/s each (target ≥ 100)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "a3c_backends.json").write_text(
        json.dumps(
            {
                "benchmark": "a3c_backends",
                "steps": steps,
                "cores": os.cpu_count(),
                "load_average_at_end": [round(value, 2) for value in load],
                "runs": rows,
                "driver_updates_per_second": driver,
                "ray_over_process_2_workers": round(ratio, 2),
            },
            indent=2,
        )
    )


def main() -> None:
    parser = arguments(__doc__, steps=300_000)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["throughput", "cartpole", "pendulum"],
        choices=["throughput", "cartpole", "pendulum"],
    )
    parser.add_argument("--throughput-steps", type=int, default=80_000)
    parser.add_argument("--repeats", type=int, default=1, help="throughput runs per worker count (the best counts)")
    parser.add_argument("--pendulum-steps", type=int, default=1_000_000)
    parser.add_argument("--pendulum-preset", default="pendulum")
    parser.add_argument(
        "--backend", choices=["process", "ray"], default="process", help="ray: compare both backends instead"
    )
    parser.add_argument("--driver-seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.backend == "ray":
        compare_backends(args.throughput_steps, args.driver_seconds)
        return
    if "throughput" in args.parts:
        throughput(args.throughput_steps, args.repeats)
    if "cartpole" in args.parts:
        report("a3c_cartpole", "CartPole-v1", 475.0, run_seeds("a3c", "CartPole-v1", 475.0, args), args)
    if "pendulum" in args.parts:
        args.steps, args.preset = args.pendulum_steps, args.pendulum_preset
        report("a3c_pendulum", "Pendulum-v1", -300.0, run_seeds("a3c", "Pendulum-v1", -300.0, args), args)


if __name__ == "__main__":  # the guard matters: worker processes are spawned and import this file
    main()
