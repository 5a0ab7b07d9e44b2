"""What a training reports while it runs, how it is asked to stop, and the progress that the
reports add up to (a pure fold over the events, for whoever draws them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
# The phase message that starts fine-tuning: after it, epochs train ResNet50's last stage too.
FINE_TUNING_PHASE = "fine-tuning conv5 and the head on photos"


@dataclass(frozen=True)
class TrainEvent:
    """One thing that happened while training; fields that do not apply are None.

    kinds: start, phase, extract (done/total), step (a message with done/total: an export's
    progress), batch, epoch, end, cancelled, error; a search's: range (the learning-rate
    range test), trial (done/total), its findings as plain JSON in `detail`.
    """

    kind: str
    time: float = field(default_factory=time.time)
    run_id: str | None = None  # on start and end
    message: str | None = None
    done: int | None = None
    total: int | None = None
    epoch: int | None = None  # 1-based
    epochs: int | None = None
    batch: int | None = None  # 1-based
    batches: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    elapsed: float | None = None  # seconds since the fit started
    eta: float | None = None  # seconds left, estimated
    detail: dict | None = None  # plain JSON values (a search's trial, its range test)

    def to_json(self) -> dict:
        """Return the event without its empty fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


OnEvent = Callable[[TrainEvent], None]


class CancelToken:
    """Asks a training to stop, from any thread: it stops after its current batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the training to stop after the current batch."""
        self._event.set()

    def is_set(self) -> bool:
        """Return whether a stop was asked for."""
        return self._event.is_set()


@dataclass(frozen=True)
class TrainingProgress:
    """What a watcher needs to draw a training: phase, progress, curves, outcome."""

    status: str  # running, done, failed, cancelled
    phase: str
    fraction: float  # 0..1 of the current phase
    eta: float | None
    history: dict[str, list[float]]
    epochs: int | None
    run_id: str | None
    error: str | None
    fine_tuned_after: int | None = None  # completed epochs when fine-tuning began


def progress_of(
    events: Sequence[TrainEvent],
    status: str,
    run_id: str | None = None,
    error: str | None = None,
) -> TrainingProgress:
    """Return phase, progress and curves described by a list of training events."""
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    phase, fraction, eta, epochs, fine_tuned_after = "starting", 0.0, None, None, None
    for event in events:
        if event.kind == "phase":
            phase, fraction, eta = event.message or phase, 0.0, None
            if phase.startswith(FINE_TUNING_PHASE):
                fine_tuned_after = len(history["loss"])
        elif event.kind == "extract" and event.total:
            phase = f"extracting features {event.done:,}/{event.total:,}"
            fraction = event.done / event.total
        elif event.kind in ("step", "trial") and event.total:
            phase, fraction = event.message or phase, (event.done or 0) / event.total
        elif event.kind == "batch":
            epochs = event.epochs
            phase = (
                f"training epoch {event.epoch}/{event.epochs}, batch {event.batch}/{event.batches}"
            )
            steps = event.epochs * event.batches
            fraction = ((event.epoch - 1) * event.batches + event.batch) / steps
            eta = event.eta
        elif event.kind == "epoch":
            epochs = event.epochs
            for key in history:
                history[key].append(getattr(event, key))
            fraction, eta = event.epoch / event.epochs, event.eta
        elif event.kind in ("end", "cancelled", "error"):
            phase = event.message or event.kind
    if status == "done":
        fraction = 1.0
    return TrainingProgress(
        status,
        phase,
        min(max(fraction, 0.0), 1.0),
        eta,
        history,
        epochs,
        run_id,
        error,
        fine_tuned_after,
    )
