"""The learning-rate range test (fastai's `lr_find`): the head trained for one short pass
while its learning rate rises from tiny to huge, the loss noted at each step; the suggested
rate is where the loss falls fastest."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import CancelToken
from flower_model.model.config import TrainConfig
from flower_model.model.head import build_head
from flower_model.model.scaling import FeatureRows, Selection, shifted_and_scaled, standardisation

START_RATE = 1e-6
STOP_RATE = 1.0
STEPS = 100
# The pass ends once the smoothed loss is this many times its lowest: the rate is too high.
DIVERGED = 4.0
SMOOTHING = 0.9  # of the loss's moving average (fastai's 0.98 is for thousands of steps)
# The first steps' average rests on a few batches: they are not looked at (fastai skips 10).
SKIPPED = 10


@dataclass(frozen=True)
class RangeTest:
    """The rates tried, the smoothed loss at each, and the rate suggested (None when the
    loss never fell)."""

    rates: tuple[float, ...]
    losses: tuple[float, ...]
    suggested: float | None

    def to_json(self) -> dict:
        return {"rates": list(self.rates), "losses": list(self.losses), "suggested": self.suggested}

    @classmethod
    def from_json(cls, value: dict) -> RangeTest:
        return cls(tuple(value["rates"]), tuple(value["losses"]), value["suggested"])


def steepest_fall(rates: np.ndarray, losses: np.ndarray, skipped: int = SKIPPED) -> float | None:
    """Return the rate where the loss falls fastest against log(rate), between the first
    `skipped` steps and its lowest point; None when it never falls there. The fall is
    measured across a window of steps (a twentieth of them each side), so that one noisy
    batch does not pass for a fall."""
    rates, losses = np.asarray(rates)[skipped:], np.asarray(losses)[skipped:]
    lowest = int(np.argmin(losses)) if len(losses) else 0
    window = max(1, (len(losses) + skipped) // 20)
    if lowest < 2 * window:
        return None
    logs = np.log10(rates[: lowest + 1])
    falls = (losses[2 * window : lowest + 1] - losses[: lowest + 1 - 2 * window]) / (
        logs[2 * window :] - logs[: -2 * window]
    )
    steepest = int(np.argmin(falls))
    return float(rates[steepest + window]) if falls[steepest] < 0 else None


def range_test(
    features: FeatureRows,
    labels: np.ndarray,
    classes: int,
    config: TrainConfig,
    steps: int = STEPS,
    cancel: CancelToken | None = None,
) -> RangeTest:
    """Train the seed's head (the config's batch size and dropout) for `steps` batches, the
    learning rate rising geometrically from START_RATE to STOP_RATE, on the standardised
    features; return the smoothed loss per rate and the suggested rate."""
    import keras

    cancel = cancel or CancelToken()
    labels = np.asarray(labels)
    mean, std = standardisation(features)
    source = features.features if isinstance(features, Selection) else features
    index = features.index if isinstance(features, Selection) else np.arange(len(labels))
    head = build_head(classes, config.seed, config.dropout)
    head.compile(
        optimizer=keras.optimizers.Adam(START_RATE), loss="sparse_categorical_crossentropy"
    )
    rates = np.geomspace(START_RATE, STOP_RATE, steps)
    generator = np.random.default_rng(config.seed)
    order = np.concatenate(
        [
            generator.permutation(len(labels))
            for _ in range(math.ceil(steps * config.batch_size / len(labels)) + 1)
        ]
    )
    smoothed, average = [], 0.0
    for step, rate in enumerate(rates):
        if cancel.is_set():
            raise TrainingCancelled("the learning-rate range test was stopped")
        head.optimizer.learning_rate.assign(rate)
        batch = order[step * config.batch_size : (step + 1) * config.batch_size]
        rows = shifted_and_scaled(Selection(source, index[batch]), mean, 1.0 / std)
        loss = float(head.train_on_batch(rows, labels[batch]))
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed.append(average / (1 - SMOOTHING ** (step + 1)))  # bias-corrected, as fastai
        if step > 2 and smoothed[-1] > DIVERGED * min(smoothed):
            break
    tried = rates[: len(smoothed)]
    return RangeTest(
        tuple(float(r) for r in tried),
        tuple(float(v) for v in smoothed),
        steepest_fall(tried, np.asarray(smoothed)),
    )
