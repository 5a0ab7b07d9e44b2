"""Small timing helpers: a stopwatch and the spread of repeated timings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """Repeated timings of one thing, in milliseconds."""

    samples: int
    p50_ms: float
    p95_ms: float
    min_ms: float


def spread(seconds: Sequence[float]) -> Spread:
    """Return the median, 95th percentile and minimum of timings given in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return Spread(
        samples=len(ms),
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        min_ms=float(ms.min()),
    )


def timed(work: Callable[[], T]) -> tuple[T, float]:
    """Return what `work` returns and the seconds it took."""
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start
