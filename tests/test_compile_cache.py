"""The persistent XLA cache that entry points turn on: where it lives, when it stays off, that it fills."""

import math
import os
import subprocess
import sys

from tfrl import compile_cache
from tfrl.compile_cache import FLAG, cache_directory, enable_compile_cache

COMPILE_ONCE = """
import tfrl.quiet
import tensorflow as tf
step = tf.function(lambda x: tf.reduce_sum(tf.tanh(x) * 3.0), jit_compile=True)
print(float(step(tf.ones([4]))))
"""


def test_the_directory_is_per_tensorflow_version_and_cpu(monkeypatch, tmp_path):
    monkeypatch.delenv("TFRL_XLA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = cache_directory()
    assert directory is not None and directory.parent == tmp_path / "tfrl" / "xla"
    assert compile_cache.tensorflow_version() in directory.name
    assert compile_cache.cpu_fingerprint() in directory.name
    monkeypatch.setattr(compile_cache, "cpu_fingerprint", lambda: "another-cpu")
    assert cache_directory() != directory  # a different CPU never loads this one's executables
    monkeypatch.setenv("TFRL_XLA_CACHE", str(tmp_path / "mine"))
    assert cache_directory().parent == tmp_path / "mine"  # type: ignore[union-attr]
    monkeypatch.setenv("TFRL_XLA_CACHE", "OFF")
    assert cache_directory() is None


def test_a_cache_the_user_chose_or_cannot_write_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("TFRL_XLA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    directory = enable_compile_cache()
    assert directory is not None and directory.is_dir()
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {FLAG}={directory}"
    monkeypatch.setenv("TF_XLA_FLAGS", f"{FLAG}=/somewhere/else")
    assert enable_compile_cache() is None and os.environ["TF_XLA_FLAGS"] == f"{FLAG}=/somewhere/else"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TFRL_XLA_CACHE", str(blocker))
    monkeypatch.delenv("TF_XLA_FLAGS")
    assert enable_compile_cache() is None and "TF_XLA_FLAGS" not in os.environ


def test_an_entry_point_keeps_its_compiled_functions_for_the_next_run(tmp_path):
    environment = {**os.environ, "TFRL_XLA_CACHE": str(tmp_path)}
    environment.pop("TF_XLA_FLAGS", None)

    def run() -> set[str]:
        output = subprocess.run(
            [sys.executable, "-c", COMPILE_ONCE], env=environment, capture_output=True, text=True, check=True
        )
        assert abs(float(output.stdout) - 12 * math.tanh(1.0)) < 1e-5
        return {path.name for path in tmp_path.rglob("*.pb")}

    first = run()
    assert len(first) == 1 and next(iter(first)).startswith("xla_compile_cache")
    assert run() == first  # the second run found it: nothing new was compiled and written
    environment["TFRL_XLA_CACHE"] = "off"
    environment["XDG_CACHE_HOME"] = str(tmp_path / "elsewhere")
    assert run() == first  # off: nothing written anywhere, not even the default place
