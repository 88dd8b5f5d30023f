"""``module:qualname`` strings that name a user's function or class, so a run can record it (in
run.json, in a config) and a new process can find it again: a user's env factory, a user's torso."""

from __future__ import annotations

import importlib
from typing import Any


def reference_of(function: Any) -> str:
    """``module:qualname`` of a function or class (``__main__:<lambda>`` for a lambda of a script)."""
    return f"{getattr(function, '__module__', None)}:{getattr(function, '__qualname__', type(function).__name__)}"


def imported(reference: str) -> Any:
    """What ``module:attribute.path`` names once ``module`` is imported, or None if it names nothing
    (or something a new process could not import: a lambda, a local function, anything of ``__main__``)."""
    module_name, _, path = reference.partition(":")
    if "<" in path or module_name == "__main__":
        return None
    try:
        found: Any = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found
