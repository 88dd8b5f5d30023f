"""Shared fixtures. Quiets TensorFlow's start-up lines for the test run (entry points do the same)."""

import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# A shell script that starts the tests in the background (`pytest &`) starts them with SIGINT ignored,
# and every `tfrl` command a test starts would inherit that: the Ctrl-C tests could not stop it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory):
    """One short DQN run on CartPole-v1 shared by the learning and export tests.

    The default preset solves CartPole-v1 (evaluation mean >= 475) in 26k-30k env steps on the
    seeds benchmarked; the run stops there or at 40k steps (~15 s here). The learning test checks
    how well it learned, the export tests use its exported policy.
    """
    import tfrl

    root = tmp_path_factory.mktemp("cartpole")
    return tfrl.train(
        "dqn",
        "CartPole-v1",
        seed=0,
        total_steps=40_000,
        logdir=root / "runs",
        export_dir=root / "saved_models",
        progress=False,
    )


@pytest.fixture
def outputs_without_tfrl(tmp_path):
    """A function that calls endpoints of a SavedModel on observations in a fresh Python that never
    imports tfrl (the export contract), returning each endpoint's output as an array."""
    import subprocess
    import sys
    import textwrap

    import numpy as np

    def run(path, observations, endpoints=("action", "sample_action", "value")):
        np.save(tmp_path / "observations.npy", observations)
        script = textwrap.dedent(f"""
            import sys, numpy as np, tensorflow as tf
            policy = tf.saved_model.load({str(path)!r})
            observations = np.load({str(tmp_path / "observations.npy")!r})
            for name in {list(endpoints)!r}:
                np.save({str(tmp_path)!r} + f"/{{name}}.npy", getattr(policy, name)(observations).numpy())
            assert not any(name.startswith("tfrl") for name in sys.modules), "tfrl was imported"
        """)
        subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
        return {name: np.load(tmp_path / f"{name}.npy") for name in endpoints}

    return run
