"""Workers for the pool tests that import nothing heavy (no TensorFlow), so they start in a blink.

A pool builds each in its own process (``spawn``, or a Ray actor), so they live in a module of their
own that both can import by name.
"""

import os

import numpy as np


class Echo:
    """Returns its spec, its pid and the sum of the array it was given."""

    def __init__(self, spec):
        self.spec = spec

    def __call__(self, published: np.ndarray):
        return self.spec, os.getpid(), float(published.sum())


class Broken:
    """Raises while it is built, as a bug in an env or a network would."""

    def __init__(self, spec):
        raise RuntimeError(f"worker {spec} cannot be built: NoSuchEnv-v0")
