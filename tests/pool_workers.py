"""Workers (and helpers) for the pool tests that import nothing heavy (no TensorFlow), so they start in a blink.

A pool builds each in its own process (``spawn``, or a Ray actor), so they live in a module of their
own that both can import by name.
"""

import os
import sys
import time

import numpy as np


class Echo:
    """Returns its spec, its pid and the sum of the array it was given."""

    def __init__(self, spec):
        self.spec = spec

    def __call__(self, published: np.ndarray):
        return self.spec, os.getpid(), float(published.sum())


class ReportsQuiet:
    """Returns whether its process silenced TensorFlow's start-up lines (imported ``tfrl.quiet``)."""

    def __init__(self, spec):
        pass

    def __call__(self, published: np.ndarray):
        return "tfrl.quiet" in sys.modules


class Broken:
    """Raises while it is built, as a bug in an env or a network would."""

    def __init__(self, spec):
        raise RuntimeError(f"worker {spec} cannot be built: NoSuchEnv-v0")


def collect_until(pool, done, timeout: float = 60.0) -> list:
    """Messages ``(worker id, message)`` of ``pool``, letting each worker go on after each, until
    ``done(messages)``; fails the test after ``timeout`` seconds."""
    messages, deadline = [], time.monotonic() + timeout
    while not done(messages):
        assert time.monotonic() < deadline, f"gave up after {len(messages)} messages in {timeout} s"
        for worker_id, message in pool.results(timeout=0.5):
            messages.append((worker_id, message))
            pool.go_on(worker_id)
    return messages


def from_each(*worker_ids, where=lambda message: True):
    """``done`` for ``collect_until``: a message satisfying ``where`` from each of ``worker_ids``."""
    return lambda messages: {worker_id for worker_id, message in messages if where(message)} >= set(worker_ids)


class InstantGradients:
    """An A3C worker that sends the same small gradients (and one finished episode) at once, so
    updates from several workers arrive together."""

    def __init__(self, spec):
        self.steps = spec.config.update_every

    def __call__(self, weights: np.ndarray):
        return np.full(weights.size, 1e-4, np.float32), self.steps, [(1.0, 1)], 1e-3, np.zeros(3, np.float32), None


def assert_runs_one_step_ahead(pool) -> None:
    """Pipelined, worker 0 of ``pool`` (an ``Echo`` on ones(4)) runs each step on the array published
    in answer to its message before the last: the sums it sees are 4, 4, 8 while the caller publishes
    twos, threes, fours after each message (a worker in lockstep would see 4, 8, 12)."""
    sums, arrived, deadline = [], [], time.monotonic() + 60
    for value in (2.0, 3.0, 4.0):
        while not arrived:
            assert time.monotonic() < deadline, f"gave up after {len(sums)} messages"
            arrived += pool.results(timeout=0.5)
        sums.append(arrived.pop(0)[1][2])
        pool.publish(np.full(4, value, np.float32))
        pool.go_on(0)
    assert sums == [4.0, 4.0, 8.0]


class RaisesOSError:
    """Raises an ``OSError`` in its step, as an env that cannot open a file would: a bug to report, not a lost connection."""

    def __init__(self, spec):
        pass

    def __call__(self, published: np.ndarray):
        raise FileNotFoundError("no such file: level-3.map")
