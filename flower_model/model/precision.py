"""Which arithmetic ResNet50 extracts features in: float32, or bfloat16 where it is native (a CPU
with AVX512-BF16 or AMX, a GPU from NVIDIA Ampere on) and agrees with float32 for the weights
in use (checked once per weights, and remembered).

Measured on a 2-core Xeon with AMX (`make bench`, two sessions): bfloat16 on the BatchNorm-
folded network is 5.4–5.7× faster than the plain float32 network, its features at cosine
0.999995 to float32's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flower_model.core import workspace

PRECISIONS = ("auto", "float32", "bfloat16")
# bfloat16 features are used only when they agree this closely with float32 ones.
MIN_BF16_COSINE = 0.999
# CPU flags of native bfloat16 arithmetic (Intel AVX512-BF16 and AMX, Linux's names).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
VERDICTS_FILE = "bfloat16-checks.json"


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Return whether this CPU computes bfloat16 natively (elsewhere it is emulated, slowly)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in BF16_CPU_FLAGS)
    return False


# GPUs of this compute capability and later compute bfloat16 natively (NVIDIA Ampere on).
BF16_GPU_CAPABILITY = (8, 0)


def gpu_bf16() -> bool | None:
    """Return whether the GPU TensorFlow computes on has native bfloat16, or None when there
    is no GPU or TensorFlow is not loaded (pages that only look at the cache never load it)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return capability is not None and tuple(capability) >= BF16_GPU_CAPABILITY


def device_has_bf16() -> bool:
    """Return whether the device that runs ResNet50 computes bfloat16 natively: the GPU where
    TensorFlow sees one, else the CPU."""
    on_gpu = gpu_bf16()
    return on_gpu if on_gpu is not None else cpu_has_bf16()


def validate_precision(precision: str) -> str:
    """Return the precision if it is one of PRECISIONS, else raise ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    return precision


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the cosine similarity of each row of `a` with the same row of `b`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.ones(len(a)), where=norms > 0)


def recorded_cosine(identity: str) -> float | None:
    """Return the bfloat16-vs-float32 cosine measured before for these weights, if any."""
    value = workspace.recalled(VERDICTS_FILE, identity)
    return float(value) if isinstance(value, int | float) else None


def record_cosine(identity: str, cosine: float) -> None:
    """Remember the bfloat16-vs-float32 cosine of these weights."""
    workspace.remember(VERDICTS_FILE, identity, cosine)


def known_precision(requested: str, identity: str) -> str | None:
    """Return what `choose_precision` answers when it needs no measurement, else None."""
    validate_precision(requested)
    if requested != "auto":
        return requested
    if not device_has_bf16():
        return "float32"
    cosine = recorded_cosine(identity)
    return _verdict(cosine) if cosine is not None else None


def _verdict(cosine: float) -> str:
    return "bfloat16" if cosine >= MIN_BF16_COSINE else "float32"


def choose_precision(requested: str, identity: str, measure_cosine: Callable[[], float]) -> str:
    """Return 'float32' or 'bfloat16' for a request of 'auto', 'float32' or 'bfloat16'.

    'auto' is bfloat16 on a CPU that computes it natively, once bfloat16 features were found
    at cosine ≥ MIN_BF16_COSINE to float32 ones for these weights; `measure_cosine` is called
    for that only the first time, and its answer is remembered.
    """
    known = known_precision(requested, identity)
    if known is not None:
        return known
    cosine = measure_cosine()
    record_cosine(identity, cosine)
    return _verdict(cosine)
