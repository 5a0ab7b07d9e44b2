"""Keras callbacks of a training, one job each: report progress, keep the best weights, stop
when asked. (fastai's split of EarlyStoppingCallback and SaveModelCallback is the model.)

An epoch whose batches a stop request cut short is not a completed epoch: it is neither
reported nor a candidate for the best weights. Keras marks no such epoch, but when it ends
`model.stop_training` is already set, which `completed_epoch` reads; that holds because
`training_callbacks` puts every callback that stops at an epoch's *end* (EarlyStopping)
after the ones that look at it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras

from flower_model.core.events import HISTORY_KEYS, CancelToken, OnEvent, TrainEvent

# Batch events are sent at most this often, so a fast head does not flood the UI.
BATCH_EVENT_SECONDS = 0.2


def completed_epoch(callback: keras.callbacks.Callback) -> bool:
    """Return whether the epoch now ending ran all its batches (see the module's note)."""
    return not callback.model.stop_training


class ReportProgress(keras.callbacks.Callback):
    """Sends a batch event at most every BATCH_EVENT_SECONDS and one event per completed
    epoch, each with the time elapsed and an estimate of the time left."""

    def __init__(self, on_event: OnEvent, epochs: int, steps: int) -> None:
        super().__init__()
        self.on_event, self.epochs, self.steps = on_event, epochs, steps
        self.start = time.perf_counter()
        self.last_sent = 0.0
        self.epoch = 0

    def _timing(self, steps_done: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        left = self.epochs * self.steps - steps_done
        return {"elapsed": elapsed, "eta": elapsed / max(steps_done, 1) * left}

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        if now - self.last_sent < BATCH_EVENT_SECONDS and batch + 1 < self.steps:
            return
        self.last_sent = now
        logs = logs or {}
        self.on_event(
            TrainEvent(
                "batch",
                epoch=self.epoch + 1,
                epochs=self.epochs,
                batch=batch + 1,
                batches=self.steps,
                loss=float(logs.get("loss", math.nan)),
                accuracy=float(logs.get("accuracy", math.nan)),
                **self._timing(self.epoch * self.steps + batch + 1),
            )
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not completed_epoch(self):
            return
        logs = logs or {}
        values = {key: float(logs.get(key, math.nan)) for key in HISTORY_KEYS}
        self.on_event(
            TrainEvent(
                "epoch",
                epoch=epoch + 1,
                epochs=self.epochs,
                **values,
                **self._timing((epoch + 1) * self.steps),
            )
        )


class KeepBestWeights(keras.callbacks.Callback):
    """Keeps the weights of the completed epoch with the lowest monitored loss (validation
    loss, or training loss for a fit without validation), in memory, and puts them back in
    the model when training ends (stopped, early or not)."""

    def __init__(self, monitor: str = "val_loss") -> None:
        super().__init__()
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = 0  # 1-based; 0 while no epoch completed
        self.best_weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {}).get(self.monitor, math.inf))
        if completed_epoch(self) and value < self.best:
            self.best, self.best_epoch = value, epoch + 1
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class StopOnRequest(keras.callbacks.Callback):
    """Stops training after the current batch once a CancelToken is set."""

    def __init__(self, cancel: CancelToken) -> None:
        super().__init__()
        self.cancel = cancel
        self.requested = False  # whether this callback stopped the training
        self.cut_short = False  # whether it stopped in the middle of an epoch's batches

    def _stop_if_asked(self, within_epoch: bool) -> None:
        if self.cancel.is_set() and not self.requested:
            self.requested, self.cut_short = True, within_epoch
            self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._stop_if_asked(within_epoch=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Between epochs too: a request made during validation stops before the next epoch.
        self._stop_if_asked(within_epoch=False)


@dataclass(frozen=True)
class FitCallbacks:
    """The callbacks of one fit, each reachable for what it found out."""

    report: ReportProgress
    best: KeepBestWeights
    stop: StopOnRequest
    early: keras.callbacks.EarlyStopping | None

    @property
    def ordered(self) -> list[keras.callbacks.Callback]:
        """Return the callbacks in the order they must run (see the module's note)."""
        # EarlyStopping last: it stops at an epoch's end, after that epoch was reported and weighed.
        tail = [self.early] if self.early is not None else []
        return [self.report, self.best, self.stop, *tail]


def training_callbacks(
    on_event: OnEvent,
    cancel: CancelToken,
    epochs: int,
    steps: int,
    patience: int,
    monitor: str = "val_loss",
) -> FitCallbacks:
    """Return the callbacks of a fit: progress, best weights, stop on request, early stopping."""
    early = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience) if patience else None
    return FitCallbacks(
        ReportProgress(on_event, epochs, steps),
        KeepBestWeights(monitor),
        StopOnRequest(cancel),
        early,
    )
