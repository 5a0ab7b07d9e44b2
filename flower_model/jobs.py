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

from flower_model.backbone import WeightsChoice, resolve_weights
from flower_model.config import resolve_config
from flower_model.errors import FlowerLensError, TrainingCancelled
from flower_model.events import CancelToken, TrainEvent, TrainingProgress, progress_of

if TYPE_CHECKING:
    from flower_model.config import TrainConfig
    from flower_model.data import Dataset
    from flower_model.runs import RunInfo


class JobConflict(FlowerLensError):
    """A job is already training on this dataset."""


@dataclass
class Job:
    """One training (or feature extraction) in a background thread; its events are appended
    as they happen."""

    job_id: str
    kind: str  # training or features
    data_root: Path
    fingerprint: str
    weights: WeightsChoice  # what the job's ResNet50 starts from
    started: float = field(default_factory=time.time)
    events: list[TrainEvent] = field(default_factory=list)
    status: str = "running"
    run_id: str | None = None
    error: str | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Return whether the job is still working."""
        return self.status == "running"

    def stop(self) -> None:
        """Ask the job to stop after its current batch."""
        self.cancel.cancel()

    def progress(self) -> TrainingProgress:
        """Return the job's state for drawing, from a copy of its events."""
        return progress_of(list(self.events), self.status, self.run_id, self.error)


TrainFn = Callable[..., "RunInfo"]


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
        """Return the job working on a dataset now, if any."""
        return next((j for j in self.jobs() if j.running and j.fingerprint == fingerprint), None)

    def latest_training(self, fingerprint: str) -> Job | None:
        """Return the most recent training job on a dataset, running or ended."""
        return next(
            (j for j in self.jobs() if j.kind == "training" and j.fingerprint == fingerprint), None
        )

    def _launch(
        self, dataset: Dataset, kind: str, weights: WeightsChoice, work: Callable[[Job], str | None]
    ) -> Job:
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
                weights=weights,
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
        self, dataset: Dataset, config: TrainConfig, train_fn: TrainFn | None = None
    ) -> Job:
        """Start training in a background thread; refuse if a job already runs on this dataset.

        The weights are resolved first, so a missing weights file is refused here, at once.
        """
        from flower_model.train import train

        run = train_fn or train

        def work(job: Job) -> str:
            return run(dataset, config, on_event=job.events.append, cancel=job.cancel).run_id

        return self._launch(dataset, "training", resolve_config(config).weights, work)

    def start_features(self, dataset: Dataset, weights: str = "imagenet") -> Job:
        """Start filling the feature cache for a dataset in a background thread."""
        from flower_model.features import compute_dataset_features

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

        return self._launch(dataset, "features", resolve_weights(weights), work)
