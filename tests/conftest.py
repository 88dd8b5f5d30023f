"""Shared fixtures. Quiets TensorFlow's start-up lines for the test run (entry points do the same)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory):
    """One short DQN run on CartPole-v1 shared by the learning and export tests.

    A budget of 12k env steps (~10 s here) with the default preset; the learning test checks it
    learned, the export tests use its exported policy.
    """
    import tfrl

    root = tmp_path_factory.mktemp("cartpole")
    return tfrl.train("dqn", "CartPole-v1", seed=0, total_steps=12_000, eval_every=4_000,
                      logdir=root / "runs", export_dir=root / "saved_models", progress=False)
