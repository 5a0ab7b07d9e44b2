"""The process set-up: objects that live on are put out of the garbage collector's sight."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from flower_model.service import runtime
from flower_model.service.runtime import settle_objects


def test_settled_objects_are_frozen_and_garbage_is_collected_first() -> None:
    class Cycle:
        pass

    # A cycle that is garbage already: collected, not frozen; what is alive is frozen.
    cycle = Cycle()
    cycle.me = cycle  # type: ignore[attr-defined]
    gone = weakref.ref(cycle)
    del cycle
    alive = Cycle()
    before = gc.get_freeze_count()
    try:
        settle_objects()
        assert gone() is None
        assert gc.get_freeze_count() > before
        assert not any(o is alive for o in gc.get_objects())  # frozen: no collection walks it
    finally:
        gc.unfreeze()


def python_says(code: str, *args: str) -> str:
    """Run `code` in a fresh Python with `args`, which must exit cleanly; return the last line
    it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_command_line_process_freezes_what_tensorflow_leaves() -> None:
    code = (
        "import gc; from flower_model.service.runtime import start_tensorflow; start_tensorflow(); "
        "print(gc.get_freeze_count())"
    )
    assert int(python_says(code)) > 100_000  # TensorFlow's modules, classes and functions


def test_tensorflows_python_warnings_are_off_unless_asked_for() -> None:
    code = (
        "import sys, logging; from flower_model.service.runtime import start_tensorflow; "
        "start_tensorflow(quiet=sys.argv[1] == 'quiet'); import tensorflow as tf; "
        "print(logging.getLevelName(tf.get_logger().getEffectiveLevel()))"
    )
    levels = {how: python_says(code, how) for how in ("quiet", "debug")}
    assert levels == {"quiet": "ERROR", "debug": "WARNING"}


def test_a_server_keeps_its_keras_session_through_streamlits_clearing(monkeypatch) -> None:
    """Streamlit clears Keras' session after every script run; in the server it is kept:
    Keras' state (here, its layer-name counter) survives the call Streamlit makes."""
    import keras

    monkeypatch.setattr(keras.backend, "clear_session", keras.backend.clear_session)
    runtime.keep_keras_session()
    before = keras.layers.Dense(2).name
    keras.backend.clear_session()  # what Streamlit's script runner calls after each run
    after = keras.layers.Dense(2).name
    assert after != "dense" and after != before


def test_the_live_cameras_libraries_load_after_tensorflow_in_a_server() -> None:
    # A server loads TensorFlow (a model to classify with) and then, for a visitor opening
    # the live camera, the WebRTC stack: libsrtp loaded after TensorFlow crashed the process.
    code = (
        "from flower_model.service import runtime\n"
        "runtime.load_before_tensorflow()\n"
        "import tensorflow\n"
        "import streamlit_webrtc\n"
        "print('both loaded')\n"
    )
    assert python_says(code) == "both loaded"


def test_a_process_with_tensorflow_loaded_first_is_left_as_it_is() -> None:
    # A test process (AppTest) has TensorFlow loaded before the app's first page run: libsrtp
    # loaded then would crash it, so nothing is loaded.
    code = (
        "import tensorflow\n"
        "from flower_model.service import runtime\n"
        "runtime.load_before_tensorflow()\n"
        "import sys\n"
        "print('pylibsrtp' in sys.modules)\n"
    )
    assert python_says(code) == "False"
