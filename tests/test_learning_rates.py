"""One ``learning_rate`` (Stable-Baselines3's name) for agents with an actor and a critic, each rate
settable apart, and configs saved under the old names still meaning what they meant."""

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from tfrl.agents import get_agent, make_config
from tfrl.errors import ConfigError
from tfrl.training import _resumed_settings

ZOO = Path(__file__).resolve().parent.parent / "saved_models"
SPLIT = ("ppo", "actor-critic", "a3c", "ddpg", "td3")
BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


@pytest.mark.parametrize("algorithm", SPLIT)
def test_learning_rate_sets_both_networks_and_either_can_be_set_apart(algorithm):
    both = make_config(algorithm, overrides={"learning_rate": "2e-4"})
    assert (both.actor_learning_rate, both.critic_learning_rate) == (None, None)
    assert (both.actor_rate, both.critic_rate) == (2e-4, 2e-4)
    apart = make_config(algorithm, overrides={"learning_rate": "2e-4", "critic_learning_rate": "1e-2"})
    assert (apart.actor_rate, apart.critic_rate) == (2e-4, 1e-2)
    back = apart.replace(critic_learning_rate="none")  # as --set critic_learning_rate=none
    assert back.critic_rate == 2e-4
    with pytest.raises(ConfigError, match=re.escape("actor_learning_rate=-0.1 is invalid")):
        make_config(algorithm, overrides={"actor_learning_rate": "-0.1"})
    with pytest.raises(ConfigError, match=re.escape("learning_rate=0.0 is invalid")):
        make_config(algorithm, overrides={"learning_rate": "0"})


@pytest.mark.parametrize(
    ("algorithm", "action_space"),
    [("ppo", gym.spaces.Discrete(2)), ("actor-critic", gym.spaces.Discrete(2)), ("ddpg", BOX)],
)
def test_the_agents_optimizers_take_the_rates(algorithm, action_space):
    agent_class, _ = get_agent(algorithm)
    config = make_config(algorithm, overrides={"learning_rate": 2e-4, "hidden_sizes": (8,)})
    agent = agent_class(config, BOX, action_space)
    critic_optimizer = agent.critic_optimizer if algorithm != "ddpg" else agent.critics.optimizer
    rates = [float(optimizer.learning_rate.numpy()) for optimizer in (agent.actor_optimizer, critic_optimizer)]
    assert rates == pytest.approx([2e-4, 2e-4])
    apart = agent_class(config.replace(actor_learning_rate=5e-3), BOX, action_space)
    assert float(apart.actor_optimizer.learning_rate.numpy()) == pytest.approx(5e-3)


def _old_configs():
    """Every shipped export's config that has the old names: saved before learning_rate existed."""
    for path in sorted(ZOO.glob("*/assets/tfrl.json")):
        metadata = json.loads(path.read_text())
        if "actor_learning_rate" in metadata.get("config", {}):
            yield pytest.param(metadata["algorithm"], metadata["config"], id=path.parent.parent.name)


@pytest.mark.parametrize(("algorithm", "saved"), list(_old_configs()))
def test_a_shipped_config_with_the_old_names_loads_and_means_the_same(algorithm, saved):
    assert "learning_rate" not in saved
    config = get_agent(algorithm)[1].from_saved(saved)
    assert (config.actor_rate, config.critic_rate) == (saved["actor_learning_rate"], saved["critic_learning_rate"])
    if saved["actor_learning_rate"] == saved["critic_learning_rate"]:  # one rate: the new way to write it
        assert (config.learning_rate, config.actor_learning_rate) == (saved["actor_learning_rate"], None)
    if algorithm.startswith("a3c"):  # saved before pipelined workers: trained in lockstep
        assert config.pipeline is False


def test_an_old_run_resumes_with_its_own_rates(tmp_path):
    old = {"actor_learning_rate": 1e-4, "critic_learning_rate": 2e-4, "gamma": 0.9}
    run = {"settings": {"algorithm": "ppo", "env_id": "CartPole-v1"}, "config": old}
    (tmp_path / "run.json").write_text(json.dumps(run))
    _, config = _resumed_settings(tmp_path, None, None)
    assert (config.actor_rate, config.critic_rate, config.gamma) == (1e-4, 2e-4, 0.9)
    run["settings"]["algorithm"] = "a3c"
    run["config"] = {"actor_learning_rate": 1e-3, "critic_learning_rate": 1e-3}
    (tmp_path / "run.json").write_text(json.dumps(run))
    _, config = _resumed_settings(tmp_path, None, None)
    assert (config.learning_rate, config.critic_rate, config.pipeline) == (1e-3, 1e-3, False)
