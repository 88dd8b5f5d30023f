"""Import this first in an entry point (the ``tfrl`` command, a script, a benchmark) to silence
TensorFlow's start-up lines and keep compiled training steps on disk for the next run
(``tfrl.compile_cache``). Library code never imports it: a program that uses tfrl keeps its
own logging and XLA settings.

    import tfrl.quiet  # noqa: F401
    # isort: split
    import tensorflow as tf

Some lines (absl's "All log messages before absl::InitializeLog()", CUDA probing on a machine
without a GPU) are written from C++ before the log level applies, so TensorFlow is imported here
with the stderr file descriptor pointed at /dev/null. An import that fails still raises its
Python exception, printed after stderr is restored.
"""

import os
import sys

from tfrl.compile_cache import enable_compile_cache


def quiet_tensorflow() -> None:
    """Set TensorFlow's logging environment and import it with its C++ start-up output hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


enable_compile_cache()
quiet_tensorflow()
