"""The machine the numbers were measured on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    """Cores, CPU, memory and library versions."""

    cores: int
    cpu_model: str
    memory_gb: float
    python: str
    tensorflow: str
    keras: str
    system: str
    device: str = "CPU"  # what TensorFlow computes on: a GPU's name where it sees one


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    """Return the 1, 5 and 15 minute load averages (other work on the machine shows here)."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def describe_machine() -> Machine:
    """Return this machine's description (imports TensorFlow for its version)."""
    import keras
    import psutil
    import tensorflow as tf

    from flower_model.model.devices import compute_device

    return Machine(
        cores=os.cpu_count() or 0,
        cpu_model=cpu_model(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        python=platform.python_version(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        system=platform.platform(),
        device=compute_device(),
    )
