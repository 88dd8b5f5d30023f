"""The same seed gives the same run, for every algorithm (A3C with one worker: with more, the order
in which the workers' updates arrive is up to the operating system, which is documented)."""

import numpy as np
import pytest

import tfrl
from tfrl.logger import read_jsonl
from tfrl.training import build_agent, load_run

SHORT_RUNS = {
    "dqn": ("CartPole-v1", 2_000, {"learning_starts": 500, "train_freq": 64, "gradient_steps": 16}),
    "reinforce": ("CartPole-v1", 2_000, {}),
    "actor-critic": ("CartPole-v1", 2_000, {}),
    "ppo": ("CartPole-v1", 2_000, {"n_steps": 16, "epochs": 4, "minibatches": 2}),
    "ddpg": ("Pendulum-v1", 800, {"learning_starts": 400, "train_freq": 100, "gradient_steps": 20}),
    "td3": ("Pendulum-v1", 800, {"learning_starts": 400, "train_freq": 100, "gradient_steps": 20}),
    "sac": ("Pendulum-v1", 800, {"learning_starts": 400, "train_freq": 100, "gradient_steps": 20}),
    "a3c": ("CartPole-v1", 1_000, {"workers": 1}),
}


def _run(tmp_path, name, algorithm):
    env_id, steps, overrides = SHORT_RUNS[algorithm]
    return tfrl.train(
        algorithm,
        env_id,
        seed=3,
        total_steps=steps,
        eval_every=steps // 2,
        eval_episodes=3,
        overrides=overrides,
        logdir=tmp_path / name,
        export=False,
        progress=False,
    )


@pytest.mark.parametrize("algorithm", list(SHORT_RUNS))
def test_the_same_seed_gives_the_same_run(tmp_path, algorithm):
    first, second = _run(tmp_path, "a", algorithm), _run(tmp_path, "b", algorithm)
    returns = [row["returns"] for row in read_jsonl(first.run_dir / "evaluations.jsonl")]
    assert returns == [row["returns"] for row in read_jsonl(second.run_dir / "evaluations.jsonl")]
    assert [row["return"] for row in read_jsonl(first.run_dir / "episodes.jsonl")] == [
        row["return"] for row in read_jsonl(second.run_dir / "episodes.jsonl")
    ]
    for name, network in first.agent.networks().items():
        for mine, theirs in zip(network.get_weights(), second.agent.networks()[name].get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{algorithm} {name} differs between two runs")
    # the runs trained: equal weights are not merely the equal initial weights of one seed
    settings, config = load_run(first.run_dir)
    untrained = build_agent(settings, first.agent.config).networks()
    assert config == first.agent.config.to_dict()
    assert any(
        not np.array_equal(trained, initial)
        for name, network in first.agent.networks().items()
        for trained, initial in zip(network.get_weights(), untrained[name].get_weights(), strict=True)
    )
