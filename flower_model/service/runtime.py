"""The TensorFlow runtime, started quietly: its C++ start-up messages are not for the user.

TensorFlow 2.21 writes them (oneDNN notices, "could not find cuda drivers", a failed cuInit)
through absl before its logging is set up, where TF_CPP_MIN_LOG_LEVEL does not reach them; so
the process's stderr is pointed at /dev/null while TensorFlow loads and finds its devices.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silenced_stderr(quiet: bool = True, keep_python: bool = False) -> Iterator[None]:
    """Send what the process writes to file descriptor 2 to /dev/null while the block runs.

    With `keep_python`, Python's sys.stderr (progress lines) still reaches where stderr went
    before, through a stream of its own that stays open afterwards (a logging handler made
    meanwhile may hold it). For command-line programs only: a server's other threads would
    lose their output.
    """
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    if keep_python:
        sys.stderr = open(  # noqa: SIM115 - left open on purpose, see above
            os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace"
        )
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def start_tensorflow(quiet: bool = True) -> None:
    """Import TensorFlow and let it find its devices, without its start-up messages and its
    Python warnings unless `quiet` is off (the CLI's --debug).

    For command-line programs, before the first TensorFlow work; a second call only sets the
    warnings' level.
    Not for a server: other threads' writes to stderr would be lost meanwhile.
    """
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with silenced_stderr(quiet):
            from flower_model.model.devices import prepare_gpus

            prepare_gpus()  # finds the devices; GPU memory is then taken as needed
        settle_objects(collect=False)
    import tensorflow as tf

    if quiet:
        # TensorFlow's Python warnings are for developers too: "5 out of the last 12 calls
        # triggered tf.function retracing" is what a process that builds several models (the
        # worker's trainings, an export checked in each runtime) does by design.
        tf.get_logger().setLevel("ERROR")


def settle_objects(collect: bool = True) -> None:
    """Put every object alive now out of the garbage collector's sight (`gc.freeze`), after
    collecting the garbage unless told not to.

    TensorFlow and Keras leave about 370,000 objects that live as long as the process; each
    full collection walked them all, 0.14 s (measured), and one fell inside a training
    whenever the allocations of its set-up crossed the threshold. Frozen objects are never
    freed, so this is for what lives on: the imports, and the worker's warmed-up state.
    """
    if collect:
        gc.collect()
    gc.freeze()


def _session_kept(*args: object, **kwargs: object) -> None:
    """Keras' clear_session, in a server that keeps its models: nothing to clear."""


def load_before_tensorflow() -> None:
    """Load the native libraries that crash the process when they load after TensorFlow's.

    libsrtp (pylibsrtp, which the live camera's WebRTC stack imports) loaded after TensorFlow
    ends the process with a segmentation fault (found: a server that had classified a photo
    died when a visitor opened the live camera; `import tensorflow; import pylibsrtp` alone
    does it, and the other order works). Loading it first costs 15 ms; where it is not
    installed, or TensorFlow is loaded already (a test process: too late), nothing is done.
    """
    if any(name.partition(".")[0] == "tensorflow" for name in list(sys.modules)):
        return  # any of its modules: its libraries are loaded
    with contextlib.suppress(ImportError):
        import pylibsrtp  # noqa: F401


def keep_keras_session() -> None:
    """Stop Streamlit clearing Keras' session after each script run, in this process.

    Streamlit's script runner calls `keras.backend.clear_session()` after every run, each
    fragment's included, for apps that build models in their scripts. Clearing the session
    clears TensorFlow's kernel cache, so that the next call of a model already loaded prepares
    its kernels again: a live frame's classification took 330-390 ms after each clear instead
    of 45-65 ms (measured), and the live bars' fragment runs four times a second. This app
    builds no model in a script run: it keeps each loaded model for the server's life
    (`st.cache_resource`), so in the server, `keras.backend.clear_session` does nothing. The
    worker and the command line, which build models one after another, are not touched.
    """
    import keras

    keras.backend.clear_session = _session_kept
