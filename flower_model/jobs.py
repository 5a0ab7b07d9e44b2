"""Training jobs in background threads, shared by every browser session of one server process.

A job outlives the page that started it: switching page or reloading the tab only
changes who is watching. One job at a time may train on a given dataset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flower_model.errors import FlowerLensError, TrainingCancelled

if TYPE_CHECKING:
    from flower_model.data import Dataset
    from flower_model.train import TrainConfig, TrainEvent


class JobConflict(FlowerLensError):
    """A job is already training on this dataset."""


@dataclass(frozen=True)
class JobProgress:
    """What a watcher needs to draw a job: phase, progress, curves, outcome."""

    status: str  # running, done, failed, cancelled
    phase: str
    fraction: float  # 0..1 of the current phase
    eta: float | None
    history: dict[str, list[float]]
    epochs: int | None
    run_id: str | None
    error: str | None


@dataclass
class Job:
    """One training in a background thread; its events are appended as they happen."""

    job_id: str
    kind: str  # training or features
    data_root: Path
    fingerprint: str
    config: object  # a TrainConfig, or the weights of a features job
    started: float = field(default_factory=time.time)
    events: list[TrainEvent] = field(default_factory=list)
    status: str = "running"
    run_id: str | None = None
    error: str | None = None
    cancel: object = None  # a CancelToken, made when the job starts
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Return whether the job is still training."""
        return self.status == "running"

    def stop(self) -> None:
        """Ask the job to stop after its current batch."""
        if self.cancel is not None:
            self.cancel.cancel()

    def progress(self) -> JobProgress:
        """Return the job's state for drawing, from a copy of its events."""
        return progress_of(list(self.events), self.status, self.run_id, self.error)


def progress_of(
    events: list[TrainEvent], status: str, run_id: str | None = None, error: str | None = None
) -> JobProgress:
    """Return phase, progress and curves described by a list of training events."""
    history: dict[str, list[float]] = {
        "loss": [],
        "accuracy": [],
        "val_loss": [],
        "val_accuracy": [],
    }
    phase, fraction, eta, epochs = "starting", 0.0, None, None
    for event in events:
        if event.kind == "phase":
            phase, fraction, eta = event.message or phase, 0.0, None
        elif event.kind == "extract" and event.total:
            phase = f"extracting features {event.done:,}/{event.total:,}"
            fraction = event.done / event.total
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
    return JobProgress(
        status, phase, min(max(fraction, 0.0), 1.0), eta, history, epochs, run_id, error
    )


class JobBoard:
    """The jobs of this process: start, find and list them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def jobs(self) -> list[Job]:
        """Return every job of this process, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.started, reverse=True)

    def running_on(self, fingerprint: str) -> Job | None:
        """Return the job training on a dataset now, if any."""
        return next((j for j in self.jobs() if j.running and j.fingerprint == fingerprint), None)

    def latest(self) -> Job | None:
        """Return the most recently started job."""
        jobs = self.jobs()
        return jobs[0] if jobs else None

    def _launch(self, dataset: Dataset, kind: str, config: object, work: Callable) -> Job:
        from flower_model.train import CancelToken

        with self._lock:
            for job in self._jobs.values():
                if job.running and job.fingerprint == dataset.fingerprint:
                    raise JobConflict(
                        f"a {job.kind} job is already running on this dataset (started "
                        f"{time.strftime('%H:%M:%S', time.localtime(job.started))}); "
                        "watch it or stop it before starting another"
                    )
            job = Job(
                job_id=f"job-{len(self._jobs) + 1}",
                kind=kind,
                data_root=dataset.root,
                fingerprint=dataset.fingerprint,
                config=config,
                cancel=CancelToken(),
            )
            self._jobs[job.job_id] = job

        def run() -> None:
            try:
                job.run_id = work(job)
                job.status = "done"
            except TrainingCancelled as exc:
                job.error, job.status = str(exc), "cancelled"
            except Exception as exc:  # the server keeps serving; the page shows the error
                job.error, job.status = str(exc) or type(exc).__name__, "failed"

        job.thread = threading.Thread(target=run, name=f"flower-lens-{job.job_id}", daemon=True)
        job.thread.start()
        return job

    def start_training(
        self,
        dataset: Dataset,
        config: TrainConfig,
        train_fn: Callable[..., object] | None = None,
    ) -> Job:
        """Start training in a background thread; refuse if a job already runs on this dataset."""
        from flower_model.train import train

        run = train_fn or train

        def work(job: Job) -> str:
            return run(dataset, config, on_event=job.events.append, cancel=job.cancel).run_id

        return self._launch(dataset, "training", config, work)

    def start_features(self, dataset: Dataset, weights: str = "imagenet") -> Job:
        """Start filling the feature cache for a dataset in a background thread."""
        from flower_model.features import compute_dataset_features
        from flower_model.train import TrainEvent

        def work(job: Job) -> None:
            job.events.append(TrainEvent("phase", message="loading ResNet50"))
            stats = compute_dataset_features(
                dataset,
                weights,
                progress=lambda done, total: job.events.append(
                    TrainEvent("extract", done=done, total=total)
                ),
                cancelled=job.cancel.is_set,
            )
            message = f"features: {stats.cached} from cache, {stats.computed} computed"
            job.events.append(TrainEvent("end", message=message))

        return self._launch(dataset, "features", weights, work)
