"""tfrl: the classic deep-RL tutorials and the MDP chapter, rebuilt in TensorFlow 2 / Keras 3.

The public names below load lazily, so ``import tfrl.mdp`` does not pull in gymnasium or the
agents, and ``import tfrl`` stays cheap until a name is used.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "TfrlError": "tfrl.errors",
    "ConfigError": "tfrl.errors",
    "EnvError": "tfrl.errors",
    "ExportError": "tfrl.errors",
    "CheckpointError": "tfrl.errors",
    "make_env": "tfrl.envs",
    "load_policy": "tfrl.export",
    "export_policy": "tfrl.export",
    "train": "tfrl.train",
    "evaluate": "tfrl.train",
    "get_agent": "tfrl.agents",
    "ALGORITHMS": "tfrl.agents",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tfrl' has no attribute {name!r}")
