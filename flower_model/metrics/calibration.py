"""How far a run's probabilities can be trusted, from its held-out photos: the expected
calibration error and its reliability diagram, one temperature that calibrates them, the
accuracy a "not sure" threshold leaves, and the threshold that keeps a precision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Equal-width bins of top-class probability, as in Guo et al. 2017 (On Calibration of Modern
# Neural Networks), where temperature scaling comes from too.
BINS = 10
# The Classify page's "not sure" threshold keeps at least this accuracy above it.
TARGET_PRECISION = 0.95
# Below this top probability a photo may not be one of the classes at all: the threshold of
# runs that have none of their own (saved before calibration, or too few held-out photos).
CONFIDENT = 0.6
# The temperature is searched between e^-4 and e^4: far beyond what a head needs. A fit at
# the bound means the log loss has no minimum (every held-out photo right, say): no fit.
LOG_TEMPERATURE_BOUND = 4.0
# A threshold rests on at least this many held-out photos above it; fewer say nothing.
MIN_SUPPORT = 20
# Probabilities are clipped here before their logarithm: a softmax that rounded to 0.
TINY = 1e-12


@dataclass(frozen=True)
class ReliabilityBin:
    """Photos whose top-class probability fell in [lower, upper): how sure, how right."""

    lower: float
    upper: float
    count: int
    confidence: float  # mean top-class probability (0 when empty)
    accuracy: float  # share right (0 when empty)


@dataclass(frozen=True)
class Threshold:
    """A top-class probability below which a photo is called "not sure"."""

    threshold: float
    target: float  # the accuracy it was chosen to keep above it
    precision: float  # the accuracy above it, on the held-out photos
    coverage: float  # the share of held-out photos at or above it
    below_accuracy: float | None  # how often the photos below it were right (None: none below)


@dataclass(frozen=True)
class Calibration:
    """How well a run's held-out probabilities match how often it is right."""

    count: int
    ece: float  # expected calibration error of the run's own probabilities
    bins: tuple[ReliabilityBin, ...]
    # Dividing the logits by it minimises the held-out log loss (None: no minimum, see
    # LOG_TEMPERATURE_BOUND); measured on the photos it was fitted on.
    temperature: float | None
    ece_scaled: float | None  # the expected calibration error after that
    # The not-sure thresholds, on the run's own and on the scaled probabilities (None: no
    # threshold keeps the target on MIN_SUPPORT held-out photos).
    threshold: Threshold | None
    threshold_scaled: Threshold | None

    def to_json(self) -> dict:
        """Return the calibration as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> Calibration:
        """Rebuild a calibration stored in a run's metadata."""

        def threshold(key: str) -> Threshold | None:
            return Threshold(**value[key]) if value.get(key) else None

        return cls(
            count=int(value["count"]),
            ece=float(value["ece"]),
            bins=tuple(ReliabilityBin(**b) for b in value["bins"]),
            temperature=value.get("temperature"),
            ece_scaled=value.get("ece_scaled"),
            threshold=threshold("threshold"),
            threshold_scaled=threshold("threshold_scaled"),
        )


def _top(labels: Sequence[int], probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each photo's top-class probability and whether that class is right."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) == 0:
        raise ValueError("calibration needs at least one held-out photo")
    right = probabilities.argmax(axis=1) == np.asarray(labels)
    return probabilities.max(axis=1), right


def reliability(
    labels: Sequence[int], probabilities: np.ndarray, bins: int = BINS
) -> tuple[ReliabilityBin, ...]:
    """Return the reliability diagram's bins: equal widths of top-class probability."""
    confidence, right = _top(labels, probabilities)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    result = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        result.append(
            ReliabilityBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=count,
                confidence=float(confidence[inside].mean()) if count else 0.0,
                accuracy=float(right[inside].mean()) if count else 0.0,
            )
        )
    return tuple(result)


def expected_calibration_error(
    labels: Sequence[int], probabilities: np.ndarray, bins: int = BINS
) -> float:
    """Return the ECE: the photo-weighted mean gap between confidence and accuracy per bin."""
    parts = reliability(labels, probabilities, bins)
    total = sum(b.count for b in parts)
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in parts))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Return the probabilities with their logits divided by a temperature (softmax of
    log p / T: a softmax's logits are its log probabilities up to a constant)."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), TINY, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def log_loss(labels: Sequence[int], probabilities: np.ndarray) -> float:
    """Return the mean negative log probability of the right class."""
    right = np.asarray(probabilities)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(right, TINY, 1.0))))


def fit_temperature(labels: Sequence[int], probabilities: np.ndarray) -> float | None:
    """Return the temperature that minimises the log loss of the scaled probabilities, or
    None when the loss has no minimum in the range searched."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(
        lambda log_t: log_loss(labels, scaled(probabilities, float(np.exp(log_t)))),
        bounds=(-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND),
        method="bounded",
        options={"xatol": 1e-5},
    )
    if abs(found.x) > LOG_TEMPERATURE_BOUND - 1e-3:
        return None
    return float(np.exp(found.x))


def coverage_curve(
    labels: Sequence[int], probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return, for each threshold a photo's top probability sets (highest first), the share
    of photos at or above it and their accuracy: what a "not sure" threshold trades."""
    confidence, right = _top(labels, probabilities)
    order = np.argsort(-confidence, kind="stable")
    confidence, right = confidence[order], right[order]
    kept = np.arange(1, len(confidence) + 1)
    accuracy = np.cumsum(right) / kept
    # Photos tied at one probability are kept or dropped together: one point per value.
    last = np.r_[confidence[1:] != confidence[:-1], True]
    return confidence[last], kept[last] / len(confidence), accuracy[last]


def confidence_threshold(
    labels: Sequence[int],
    probabilities: np.ndarray,
    target: float = TARGET_PRECISION,
    support: int = MIN_SUPPORT,
) -> Threshold | None:
    """Return the lowest threshold above which the held-out photos are right at least
    `target` of the time, with at least `support` photos above it; None if there is none."""
    thresholds, coverage, accuracy = coverage_curve(labels, probabilities)
    confidence, right = _top(labels, probabilities)
    kept = np.rint(coverage * len(confidence))
    good = np.flatnonzero((accuracy >= target) & (kept >= support))
    if not len(good):
        return None
    i = int(good[-1])  # the lowest threshold that still keeps the target
    below = confidence < thresholds[i]
    return Threshold(
        threshold=float(thresholds[i]),
        target=target,
        precision=float(accuracy[i]),
        coverage=float(coverage[i]),
        below_accuracy=float(right[below].mean()) if below.any() else None,
    )


def calibrate(labels: Sequence[int], probabilities: np.ndarray) -> Calibration:
    """Return how well held-out probabilities are calibrated, and what would calibrate them."""
    temperature = fit_temperature(labels, probabilities)
    calibrated = scaled(probabilities, temperature) if temperature is not None else None
    return Calibration(
        count=len(labels),
        ece=expected_calibration_error(labels, probabilities),
        bins=reliability(labels, probabilities),
        temperature=temperature,
        ece_scaled=(
            expected_calibration_error(labels, calibrated) if calibrated is not None else None
        ),
        threshold=confidence_threshold(labels, probabilities),
        threshold_scaled=(
            confidence_threshold(labels, calibrated) if calibrated is not None else None
        ),
    )
