"""Time tfrl.mdp value iteration on random MDPs with 2,000 states and 8 actions.

Each row solves one random MDP to a Bellman residual ‖T V − V‖∞ below 1e-8 and reports the sweeps,
the wall time (best of three when a run takes under a second) and the error against policy
iteration's exact values. "dense" MDPs draw every P[s, a, ·] from a flat Dirichlet over all 2,000
states; "sparse" ones give each (s, a) 5 random successors, which mixes more slowly and so shows
where MacQueen extrapolation helps less. P is held dense (2000 × 8 × 2000 float64 = 256 MB), so a
sweep is one 16,000 × 2,000 matrix-vector product.

Prints a table and writes ``benchmarks/results/mdp_value_iteration.json``.
Run: ``python benchmarks/mdp_value_iteration.py``
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split
import functools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrl.mdp import MarkovDecisionProcess, policy_iteration, value_iteration

STATES, ACTIONS, TOL = 2000, 8, 1e-9
RESULTS = Path(__file__).parent / "results" / "mdp_value_iteration.json"


def random_mdp(kind: str, gamma: float, seed: int = 0) -> MarkovDecisionProcess:
    """A random MDP with rewards uniform in [0, 1); ``kind`` is "dense" or "sparse"."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        P = rng.exponential(size=(STATES, ACTIONS, STATES))
    else:
        P = np.zeros((STATES, ACTIONS, STATES))
        successors = rng.integers(STATES, size=(STATES, ACTIONS, 5))
        np.put_along_axis(P, successors, rng.exponential(size=successors.shape), axis=2)
    P /= P.sum(axis=2, keepdims=True)
    return MarkovDecisionProcess(P, rng.random((STATES, ACTIONS)), gamma)


def timed(run):
    """Result and wall time of ``run()``: best of three when one run takes under a second."""
    start = time.perf_counter()
    result = run()
    best = time.perf_counter() - start
    if best < 1.0:
        for _ in range(2):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    cases = [
        ("dense", 0.9, "value iteration + MacQueen"),
        ("dense", 0.9, "value iteration, plain"),
        ("dense", 0.9, "policy iteration"),
        ("dense", 0.99, "value iteration + MacQueen"),
        ("sparse", 0.9, "value iteration + MacQueen"),
        ("sparse", 0.9, "value iteration, plain"),
    ]
    rows = []
    exact = {}
    print(f"{'P':<7}{'gamma':>6}  {'method':<28}{'sweeps':>7}{'seconds':>9}{'residual':>11}{'err vs PI':>11}")
    for kind, gamma, method in cases:
        mdp = random_mdp(kind, gamma)
        if (kind, gamma) not in exact:
            exact[(kind, gamma)] = policy_iteration(mdp).values
        if method == "policy iteration":
            solution, seconds = timed(functools.partial(policy_iteration, mdp))
        else:
            extrapolate = method.endswith("MacQueen")
            solution, seconds = timed(functools.partial(value_iteration, mdp, tol=TOL, extrapolate=extrapolate))
        error = float(np.max(np.abs(solution.values - exact[(kind, gamma)])))
        rows.append(
            {
                "P": kind,
                "states": STATES,
                "actions": ACTIONS,
                "gamma": gamma,
                "method": method,
                "sweeps": solution.sweeps,
                "seconds": round(seconds, 4),
                "residual": solution.residual,
                "error_vs_policy_iteration": error,
                "converged": bool(solution.converged),
            }
        )
        print(
            f"{kind:<7}{gamma:>6}  {method:<28}{solution.sweeps:>7}{seconds:>9.3f}"
            f"{solution.residual:>11.1e}{error:>11.1e}"
        )
        del mdp
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "mdp_value_iteration",
                "tolerance": TOL,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "tensorflow": tf.__version__,
                },
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
