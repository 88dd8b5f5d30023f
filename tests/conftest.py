"""Shared fixtures. Quiets TensorFlow's start-up lines for the test run (entry points do the same)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

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
