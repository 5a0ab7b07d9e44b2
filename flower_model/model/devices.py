"""The devices TensorFlow computes on: a GPU when it sees one, else the CPU."""

from __future__ import annotations

import contextlib


def prepare_gpus() -> list[str]:
    """Let TensorFlow take GPU memory as it needs it rather than all at start (a server's
    worker, a cluster's worker and a second process can then share one GPU); return the
    names of the GPUs it sees. Before TensorFlow's first computation only."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Once TensorFlow has started on it, growth stays what it was set to then.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    return [gpu.name for gpu in gpus]


def compute_device() -> str:
    """Return what TensorFlow computes on, for people: 'GPU (name)' or 'CPU'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU ({details.get('device_name', gpus[0].name)})"
