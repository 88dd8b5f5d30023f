"""The registry of algorithms: a name on the command line → its agent and config classes.

Modules load lazily, so listing algorithms or training one does not import the others.
"""

from __future__ import annotations

import difflib
from importlib import import_module
from typing import NamedTuple

from tfrl.errors import ConfigError


class AlgorithmEntry(NamedTuple):
    module: str
    agent: str
    config: str
    summary: str


ALGORITHMS: dict[str, AlgorithmEntry] = {
    "dqn": AlgorithmEntry("tfrl.agents.dqn", "DQNAgent", "DQNConfig", "Deep Q-Network, discrete actions"),
}


def get_agent(name: str):
    """``(agent_class, config_class)`` for a registered algorithm name."""
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, ALGORITHMS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of: {', '.join(ALGORITHMS)}"
        raise ConfigError(f"unknown algorithm {name!r}; {hint}")
    entry = ALGORITHMS[name]
    module = import_module(entry.module)
    return getattr(module, entry.agent), getattr(module, entry.config)
