"""A persistent cache of XLA-compiled training steps, turned on by entry points (``tfrl.quiet``).

Every agent's update is one XLA-compiled ``tf.function``; compiling it costs ~1 s of a short run
(PPO on CartPole-v1: 1.2 s of a 3.8 s run to 15k env steps). TensorFlow can keep the compiled
executables on disk and load them in later processes (~0.4 s instead), keyed by the exact HLO
program, so a second run with the same networks and shapes skips the compile. TensorFlow reads the
directory from ``TF_XLA_FLAGS`` at the first compile of a process, so this only sets that variable;
the cache itself (atomic writes, an entry used only when its HLO matches byte for byte) is TensorFlow's.

The directory is ``$TFRL_XLA_CACHE`` if set (``off`` turns the cache off), else
``$XDG_CACHE_HOME/tfrl/xla`` (``~/.cache/tfrl/xla``), with one subdirectory per TensorFlow version
and CPU instruction set: an executable compiled for one CPU's vector instructions must never load on
another that lacks them (a home directory shared across machines). A ``TF_XLA_FLAGS`` that already
names a cache directory is left alone. Library code never calls this: a program that imports tfrl
keeps its own XLA settings.
"""

import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path

FLAG = "--tf_xla_persistent_cache_directory"
OFF = "off"


def cpu_fingerprint() -> str:
    """A short hash of the CPU's model and instruction-set flags (Linux), else of the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    described = [line for line in lines if line.startswith(("model name", "flags", "Features"))][:2]
    text = "\n".join(described) or f"{platform.machine()} {platform.processor()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_directory() -> Path | None:
    """Where compiled executables go, or None when ``TFRL_XLA_CACHE=off``."""
    configured = os.environ.get("TFRL_XLA_CACHE")
    if configured is not None and configured.strip().lower() == OFF:
        return None
    if configured:
        root = Path(configured).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfrl" / "xla"
    return root / f"tf-{tensorflow_version()}-{platform.machine()}-{cpu_fingerprint()}"


def tensorflow_version() -> str:
    """The installed TensorFlow's version, read without importing it (the flag must be set first)."""
    for distribution in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def enable_compile_cache() -> Path | None:
    """Point TensorFlow's XLA persistent cache at ``cache_directory()``; the directory in use, if any.

    Nothing changes when ``TF_XLA_FLAGS`` names a cache already, when the cache is off, or when the
    directory cannot be created (a read-only home): training then compiles as it would without it.
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if FLAG in flags:
        return None
    directory = cache_directory()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return None
    os.environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={directory}".strip()
    return directory
