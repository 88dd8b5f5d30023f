"""tfrl: the classic deep-RL tutorials and the MDP chapter, rebuilt in TensorFlow 2 / Keras 3.

    import tfrl
    result = tfrl.train("dqn", "CartPole-v1", seed=0)       # trains, checkpoints, exports
    policy = tfrl.load_policy(result.export_path)           # numpy in, numpy out
    tfrl.evaluate(policy, "CartPole-v1", episodes=20)

Public names load lazily: ``import tfrl`` (and the ``tfrl`` command's start-up) stays cheap and
does not import TensorFlow until a name that needs it is used.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "TfrlError": "tfrl.errors",
    "ConfigError": "tfrl.errors",
    "EnvError": "tfrl.errors",
    "ExportError": "tfrl.errors",
    "CheckpointError": "tfrl.errors",
    "Callback": "tfrl.callbacks",
    "StopAtReturn": "tfrl.callbacks",
    "StopWhenNoImprovement": "tfrl.callbacks",
    "ALGORITHMS": "tfrl.agents",
    "get_agent": "tfrl.agents",
    "make_env": "tfrl.envs",
    "export_policy": "tfrl.export",
    "load_policy": "tfrl.export",
    "train": "tfrl.training",
    "evaluate": "tfrl.training",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tfrl' has no attribute {name!r}")
