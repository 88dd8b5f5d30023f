"""The registry of algorithms: a name on the command line → its agent and config classes.

Modules load lazily, so listing algorithms or training one does not import the others.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import import_module
from types import MappingProxyType
from typing import Any, NamedTuple

from tfrl.agents.config import AgentConfig
from tfrl.errors import ConfigError


class AlgorithmEntry(NamedTuple):
    """Where an algorithm lives. ``defaults`` are config fields it sets on top of its config class's
    defaults (under every preset), so one agent class can serve several names: ``double-dqn`` is the
    DQN agent with ``double=True``."""

    module: str
    agent: str
    config: str
    summary: str
    defaults: Mapping[str, Any] = MappingProxyType({})


ALGORITHMS: dict[str, AlgorithmEntry] = {
    "dqn": AlgorithmEntry("tfrl.agents.dqn", "DQNAgent", "DQNConfig", "Deep Q-Network, discrete actions"),
    "double-dqn": AlgorithmEntry(
        "tfrl.agents.dqn",
        "DQNAgent",
        "DQNConfig",
        "Double DQN: the online net picks a', the target net evaluates it",
        MappingProxyType({"double": True}),
    ),
    "dueling-dqn": AlgorithmEntry(
        "tfrl.agents.dqn",
        "DQNAgent",
        "DQNConfig",
        "Dueling DQN: Q = V + A - mean A",
        MappingProxyType({"dueling": True}),
    ),
    "reinforce": AlgorithmEntry(
        "tfrl.agents.reinforce",
        "ReinforceAgent",
        "ReinforceConfig",
        "REINFORCE policy gradient, discrete or continuous actions",
    ),
    "actor-critic": AlgorithmEntry(
        "tfrl.agents.actor_critic",
        "ActorCriticAgent",
        "ActorCriticConfig",
        "advantage actor-critic (n-step, vector envs), discrete or continuous actions",
    ),
    "ppo": AlgorithmEntry(
        "tfrl.agents.ppo",
        "PPOAgent",
        "PPOConfig",
        "Proximal Policy Optimization (clipped or KL-penalty surrogate, GAE), discrete or continuous",
    ),
    "ddpg": AlgorithmEntry(
        "tfrl.agents.ddpg", "DDPGAgent", "DDPGConfig", "Deep Deterministic Policy Gradient, continuous actions"
    ),
    "td3": AlgorithmEntry(
        "tfrl.agents.ddpg",
        "DDPGAgent",
        "DDPGConfig",
        "Twin Delayed DDPG: twin critics, target smoothing, delayed actor",
        MappingProxyType({"td3": True}),
    ),
    "sac": AlgorithmEntry(
        "tfrl.agents.sac",
        "SACAgent",
        "SACConfig",
        "Soft Actor-Critic: twin critics, squashed Gaussian actor, learned temperature, continuous",
    ),
    "a3c": AlgorithmEntry(
        "tfrl.agents.a3c",
        "A3CAgent",
        "A3CConfig",
        "asynchronous advantage actor-critic, one worker process per core, discrete or continuous",
    ),
    "a3c-rnn": AlgorithmEntry(
        "tfrl.agents.a3c",
        "A3CAgent",
        "A3CConfig",
        "A3C with a GRU state carried between steps (reset at episode ends)",
        MappingProxyType({"recurrent": True}),
    ),
}


def get_agent(name: str) -> tuple[Any, type[AgentConfig]]:
    """``(agent_class, config_class)`` for a registered algorithm name."""
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, ALGORITHMS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of: {', '.join(ALGORITHMS)}"
        raise ConfigError(f"unknown algorithm {name!r}; {hint}")
    entry = ALGORITHMS[name]
    module = import_module(entry.module)
    return getattr(module, entry.agent), getattr(module, entry.config)


def make_config(name: str, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """The config of algorithm ``name``: ``preset``, then the entry's ``defaults``, then ``overrides``."""
    _, config_class = get_agent(name)
    return config_class.from_preset(preset, {**ALGORITHMS[name].defaults, **dict(overrides or {})})
