"""Training, feature, audit and export jobs, shared by every browser session of one server process.

A job outlives the page that started it: switching page or reloading the tab only changes
who is watching. The board keeps a journal of its unfinished jobs in the workspace: after a
restart, or when the worker process dies, a job is shown as interrupted, and can be asked for
again with the same settings. Jobs run one at a time in the worker process (worker.py), in the
order they were asked for; the others wait in line and show their place. One job at a time may
be running or waiting on a given dataset.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flower_model.core.errors import FlowerLensError
from flower_model.core.events import CancelToken, TrainEvent, TrainingProgress, progress_of
from flower_model.core.locks import holding
from flower_model.model.backbone import WeightsChoice, resolve_weights
from flower_model.model.config import resolve_config
from flower_model.service.journal import Asked, Journal, left_behind
from flower_model.service.worker import Outcome, Task, Worker

if TYPE_CHECKING:
    from flower_model.data.dataset import Dataset
    from flower_model.model.config import TrainConfig
    from flower_model.runs.store import RunInfo


# How many ended jobs the board remembers (the Train page shows the latest per dataset).
KEPT_JOBS = 50


class JobConflict(FlowerLensError):
    """A job is already training on this dataset."""


@dataclass
class Job:
    """One training (or feature extraction): waiting, then running in the worker; its events
    are appended as they arrive."""

    job_id: str
    number: int
    kind: str  # training, features, audit or export
    data_root: Path
    fingerprint: str
    weights: WeightsChoice  # what the job's ResNet50 starts from
    task: Task | None  # None: a job interrupted before this server started
    started: float = field(default_factory=time.time)
    events: list[TrainEvent] = field(default_factory=list)
    status: str = "waiting"  # waiting, running, done, cancelled, failed, interrupted
    run_id: str | None = None
    error: str | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    ended: threading.Event = field(default_factory=threading.Event)
    on_stop: Callable[[Job], None] | None = None
    asked: Asked | None = None  # how it was asked for: what asking again needs

    @property
    def running(self) -> bool:
        """Return whether the job is still to finish (waiting in line or working)."""
        return self.status in ("waiting", "running")

    def stop(self) -> None:
        """Ask the job to stop after its current batch (or not to start, if it waits)."""
        self.cancel.cancel()
        if self.on_stop is not None:
            self.on_stop(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has ended; return whether it has."""
        return self.ended.wait(timeout)

    def progress(self) -> TrainingProgress:
        """Return the job's state for drawing, from a copy of its events."""
        return progress_of(list(self.events), self.status, self.run_id, self.error)

    def finish(self, outcome: Outcome) -> None:
        """Record how the job ended."""
        if outcome.status == "done":
            self.run_id = outcome.value
        else:
            self.error = outcome.value
        self.status = outcome.status
        self.ended.set()


TrainFn = Callable[..., "RunInfo"]


def training_task(
    train_fn: TrainFn | None, dataset: Dataset, config: TrainConfig, owner: str, on_event, cancel
):
    """Train in the worker (with `train.train` unless told otherwise) for `owner`; return the
    run's id."""
    if train_fn is None:
        from flower_model.workflows.train import train as train_fn  # TensorFlow: the worker's alone
    return train_fn(dataset, config, on_event=on_event, cancel=cancel, owner=owner).run_id


def features_task(dataset: Dataset, weights: str, on_event, cancel) -> None:
    """Fill the feature cache for a dataset in the worker."""
    from flower_model.features.extraction import dataset_features

    stats = dataset_features(
        dataset,
        weights,
        progress=lambda done, total: on_event(TrainEvent("extract", done=done, total=total)),
        cancelled=cancel.is_set,
        on_phase=lambda message: on_event(TrainEvent("phase", message=message)),
    ).stats
    message = f"features: {stats.cached} from cache, {stats.computed} computed"
    on_event(TrainEvent("end", message=message))


def audit_task(dataset: Dataset, weights: str, on_event, cancel) -> None:
    """Audit a dataset in the worker; the audit is kept in the workspace for the page."""
    from flower_model.audit.findings import audit_dataset

    def progress(what: str, done: int, total: int) -> None:
        on_event(TrainEvent("step", message=what, done=done, total=total))

    audit = audit_dataset(
        dataset,
        weights,
        progress=progress,
        cancel=cancel,
        on_phase=lambda message: on_event(TrainEvent("phase", message=message)),
    )
    message = f"audit done: {len(audit.label_issues)} label issue(s), {len(audit.outliers)} "
    on_event(TrainEvent("end", message=message + f"outlier(s), {len(audit.duplicates)} group(s)"))


def tune_task(
    dataset: Dataset,
    config: TrainConfig,
    trials: int,
    seconds: float | None,
    dropout: bool,
    on_event,
    cancel,
) -> None:
    """Search a dataset's training settings in the worker; the search is kept in the
    workspace for the page (a Stop keeps the trials done)."""
    from flower_model.model.search import Space
    from flower_model.workflows.tune import tune

    tune(dataset, config, trials, seconds, Space(dropout=dropout), on_event, cancel)


# An export job's progress is reported in thousandths.
STEP_TOTAL = 1000


def export_task(run_id: str, fmt: str, on_event, cancel) -> str:
    """Export a run for the app's download, in the worker; return the run's id.

    The .zip is kept in the workspace: asked for again, it is ready at once.
    """
    from flower_model.core.errors import TrainingCancelled
    from flower_model.export.exporter import app_export_path, export_run, remove_leftovers
    from flower_model.runs.store import get_run

    destination = app_export_path(run_id, fmt)
    if destination.is_file():
        return run_id

    def progress(what: str, share: float) -> None:
        if cancel.is_set():
            raise TrainingCancelled("export stopped; nothing was kept")
        on_event(TrainEvent("step", message=what, done=round(share * STEP_TOTAL), total=STEP_TOTAL))

    # One process at a time writes this export: another server on the workspace may be
    # writing it, and then this one waits and finds it ready.
    waiting = "another process on this workspace is writing this export: waiting for it"
    with holding(
        export_fingerprint(run_id, fmt),
        cancel.is_set,
        on_wait=lambda: on_event(TrainEvent("phase", message=waiting)),
    ):
        if destination.is_file():
            return run_id
        # Holding the lock, what this export's earlier tries left (killed in a conversion,
        # which ignores Stop) is no one's: removed. Other exports' files are left alone.
        remove_leftovers(destination.parent, destination.name)
        export_run(get_run(run_id), fmt, destination, progress)
    return run_id


def export_fingerprint(run_id: str, fmt: str) -> str:
    """Return what the board keys an export job by: one job per run and format at a time."""
    return f"export:{run_id}:{fmt}"


# What an interrupted job says happened to it.
RESTARTED = "interrupted by a server restart: nothing half-done was kept"


class JobBoard:
    """The jobs of this server: start, find and list them, run them in order (thread-safe)."""

    def __init__(self, worker: Worker | None = None, journal: Journal | None = None) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._line: deque[Job] = deque()
        self._wake = threading.Condition(self._lock)
        self._worker = worker or Worker()
        self._worker.start()
        self._current: Job | None = None
        self._numbers = 0
        self._journal = journal or Journal()
        for asked in left_behind(self._journal.folder):
            self._numbers += 1
            job = Job(
                job_id=f"job-{self._numbers}",
                number=self._numbers,
                kind=asked.kind,
                data_root=Path(asked.data_root),
                fingerprint=asked.fingerprint,
                weights=WeightsChoice(str(asked.settings.get("weights", "none"))),
                task=None,
                started=asked.asked_at,
                status="interrupted",
                error=RESTARTED,
                asked=asked,
            )
            job.ended.set()
            self._jobs[job.job_id] = job
        threading.Thread(target=self._dispatch, name="flower-lens-jobs", daemon=True).start()

    def jobs(self) -> list[Job]:
        """Return every job of this server, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.started, reverse=True)

    def running_on(self, fingerprint: str, kind: str | None = None) -> Job | None:
        """Return the newest job (of a kind, if given) working or waiting on a dataset now,
        if any."""
        return next(
            (
                j
                for j in self.jobs()
                if j.running and j.fingerprint == fingerprint and kind in (None, j.kind)
            ),
            None,
        )

    def latest(self, fingerprint: str, kind: str = "training") -> Job | None:
        """Return the most recent job of a kind on a dataset, running or ended."""
        return next(
            (j for j in self.jobs() if j.kind == kind and j.fingerprint == fingerprint), None
        )

    def _launch(
        self,
        root: Path,
        fingerprint: str,
        kind: str,
        weights: WeightsChoice,
        task_of,
        settings: dict,
        follows: tuple[str, ...] = (),
    ) -> Job:
        """Line a job up; refuse it while another runs or waits on the same data, unless
        that one is of a kind it `follows` (jobs run in order: it then finds its work done).
        `settings` (JSON values) are what asking for it again needs, noted in the journal."""
        with self._lock:
            for job in self._jobs.values():
                if job.running and job.fingerprint == fingerprint and job.kind not in follows:
                    what = "this run in this format" if kind == "export" else "this dataset"
                    raise JobConflict(
                        f"a {job.kind} job is already {job.status} on {what} (asked for "
                        f"{time.strftime('%H:%M:%S', time.localtime(job.started))}); "
                        "watch it or stop it before starting another"
                    )
            self._numbers += 1
            number = self._numbers
            job = Job(
                job_id=f"job-{number}",
                number=number,
                kind=kind,
                data_root=root,
                fingerprint=fingerprint,
                weights=weights,
                task=task_of(number),
                on_stop=self._stop,
            )
            job.asked = Asked(kind, str(root), fingerprint, job.started, settings)
            self._journal.add(job.job_id, job.asked)
            self._jobs[job.job_id] = job
            self._line.append(job)
            self._announce_places()
            self._wake.notify()
        return job

    def _forget_old_jobs(self) -> None:
        """Keep the KEPT_JOBS most recent ended jobs (caller holds the lock): a server that
        runs for months does not hold every job's events."""
        ended = sorted(
            (job for job in self._jobs.values() if not job.running), key=lambda job: job.started
        )
        for job in ended[:-KEPT_JOBS]:
            del self._jobs[job.job_id]

    def _announce_places(self) -> None:
        """Tell each waiting job how many jobs are ahead of it (caller holds the lock)."""
        current = self._current
        ahead = 1 if current is not None else 0
        for place, job in enumerate(self._line, start=ahead):
            if (
                place == 1
                and current is not None
                and current.kind == "features"
                and (current.fingerprint == job.fingerprint)
            ):
                message = "waiting for this dataset's features, which are being computed"
                job.events.append(TrainEvent("phase", message=message))
            elif place:
                message = f"waiting for {place} job(s) ahead to finish"
                job.events.append(TrainEvent("phase", message=message))

    def _stop(self, job: Job) -> None:
        """Take a waiting job out of the line; a running one sees its cancel token."""
        with self._lock:
            if job in self._line:
                self._line.remove(job)
                job.finish(Outcome(job.number, "cancelled", "stopped before it started"))
                self._journal.remove(job.job_id)
                self._announce_places()

    def _dispatch(self) -> None:
        """Run the waiting jobs one after the other, for as long as the server runs."""
        while True:
            with self._lock:
                while not self._line:
                    self._wake.wait()
                job = self._current = self._line.popleft()
                job.status = "running"
                self._announce_places()
            try:
                assert job.task is not None  # only interrupted jobs have none, never lined up
                outcome = self._worker.run(job.task, job.events.append, job.cancel.is_set)
            except Exception as exc:  # the worker could not even be started
                outcome = Outcome(job.number, "failed", f"the worker failed: {exc}")
            with self._lock:
                self._current = None
                job.finish(outcome)
                self._journal.remove(job.job_id)
                self._forget_old_jobs()

    def close(self) -> None:
        """Let the worker process finish its job and exit (for tests and tools; a server's
        worker exits by itself when the server is gone)."""
        self._worker.close()
        self._journal.close()

    def start_training(
        self,
        dataset: Dataset,
        config: TrainConfig,
        train_fn: TrainFn | None = None,
        trained_on: Dataset | None = None,
        owner: str = "",
    ) -> Job:
        """Start training in the worker (or line it up); refuse if a job already runs or waits
        on this dataset, except a features job (started in the background when the dataset was
        chosen, say): the training waits for it and finds the features it computed.
        `train_fn` must be importable by the worker (a module-level function).
        `trained_on` is the dataset as decided when Train was clicked (photos left out or
        relabelled); the job is the folder's all the same. `owner` is who asked for it (the
        run records it).

        The weights are resolved and the split tried first, so a missing weights file or a
        class that cannot be held out is refused here, at once.
        """
        from flower_model.data.dataset import split_dataset

        weights = resolve_config(config).weights
        photos = trained_on or dataset
        split_dataset(photos, config.val_fraction, config.seed)
        return self._launch(
            dataset.root,
            dataset.fingerprint,
            "training",
            weights,
            lambda n: Task(n, training_task, (train_fn, photos, config, owner)),
            {"config": config.to_json(), "weights": weights.kind, "owner": owner},
            follows=("features",),
        )

    def start_audit(self, dataset: Dataset, weights: str = "imagenet") -> Job:
        """Start auditing a dataset in the worker (or line it up, after a features job on it)."""
        return self._launch(
            dataset.root,
            dataset.fingerprint,
            "audit",
            resolve_weights(weights),
            lambda n: Task(n, audit_task, (dataset, weights)),
            {"weights": weights},
            follows=("features",),
        )

    def start_tune(
        self,
        dataset: Dataset,
        config: TrainConfig,
        trials: int,
        seconds: float | None = None,
        dropout: bool = False,
    ) -> Job:
        """Start searching a dataset's training settings in the worker (or line it up, after
        a features job on it); refuse at once what a training would refuse."""
        from flower_model.data.dataset import split_dataset

        weights = resolve_config(config).weights
        split_dataset(dataset, config.val_fraction, config.seed)
        return self._launch(
            dataset.root,
            dataset.fingerprint,
            "tune",
            weights,
            lambda n: Task(n, tune_task, (dataset, config, trials, seconds, dropout)),
            {
                "config": config.to_json(),
                "weights": weights.kind,
                "trials": trials,
                "seconds": seconds,
                "dropout": dropout,
            },
            follows=("features",),
        )

    def start_features(self, dataset: Dataset, weights: str = "imagenet") -> Job:
        """Start filling the feature cache for a dataset in the worker (or line it up)."""
        return self._launch(
            dataset.root,
            dataset.fingerprint,
            "features",
            resolve_weights(weights),
            lambda n: Task(n, features_task, (dataset, weights)),
            {"weights": weights},
        )

    def features_in_background(self, dataset: Dataset, weights: str) -> Job | None:
        """Start filling the feature cache for a dataset when no job works on it and some of
        its photos' features for these weights are missing; return the features job then
        running on it, if any (another visitor's, say)."""
        from flower_model.features.extraction import needs_extraction

        if self.running_on(dataset.fingerprint) is None and needs_extraction(dataset, weights):
            try:
                return self.start_features(dataset, weights)
            except JobConflict:  # a job started meanwhile
                pass
        return self.running_on(dataset.fingerprint, kind="features")

    def start_export(self, run: RunInfo, fmt: str) -> Job:
        """Start exporting a run as a .zip for download in the worker (or line it up);
        refuse if the same run is already being exported in that format."""
        from flower_model.export.formats import format_of
        from flower_model.runs.metadata import WeightsInfo

        format_of(fmt)  # an unknown format is refused here, at once
        weights: WeightsInfo = run.metadata.weights
        return self._launch(
            run.path,
            export_fingerprint(run.run_id, fmt),
            "export",
            WeightsChoice(weights.kind),
            lambda n: Task(n, export_task, (run.run_id, fmt)),
            {"weights": weights.kind, "run_id": run.run_id, "format": fmt},
        )

    def start_again(
        self,
        job: Job,
        dataset: Dataset | None,
        trained_on: Dataset | None = None,
        train_fn: TrainFn | None = None,
    ) -> Job:
        """Ask again for an interrupted job, with the settings it was asked with, on the
        dataset as it is now (`trained_on`: a training's photos as decided now); an export
        needs no dataset. Refused as its kind's start is (a job running on the dataset)."""
        from flower_model.model.config import TrainConfig

        asked = job.asked
        if asked is None:
            raise FlowerLensError(f"job {job.number} has no settings kept to start it again")
        settings = asked.settings
        if asked.kind == "export":
            from flower_model.runs.store import get_run

            return self.start_export(get_run(settings["run_id"]), settings["format"])
        if dataset is None:
            raise FlowerLensError("choose the dataset the job was on to start it again")
        if asked.kind == "training":
            config = TrainConfig.from_json(settings["config"])
            owner = str(settings.get("owner") or "")
            return self.start_training(dataset, config, train_fn, trained_on, owner)
        if asked.kind == "tune":
            return self.start_tune(
                trained_on or dataset,
                TrainConfig.from_json(settings["config"]),
                int(settings["trials"]),
                settings.get("seconds"),
                bool(settings.get("dropout")),
            )
        if asked.kind == "audit":
            return self.start_audit(dataset, settings["weights"])
        return self.start_features(dataset, settings["weights"])
