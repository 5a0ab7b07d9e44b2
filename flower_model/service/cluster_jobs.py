"""The job board on a Ray cluster: one line of jobs for every app replica on the cluster.

With $FLOWER_LENS_CLUSTER set, the board is not the server's own: it lives in the cluster as
a detached named actor (`BOARD_NAME` in the Flower Lens namespace), which every replica finds
by name. Inside it runs the same JobBoard as a server's, so the rules are the same (one job
per dataset at a time, places in line, Stop before the start or during the run); its worker
is the cluster: each job is a Ray task, which sends its events to the board and asks it
whether it should stop. A replica only relays: its visitors see every replica's jobs, Stop
works from any of them, and a job goes on when the replica that started it dies.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flower_model.core.cluster import NAMESPACE, ClusterError, connect
from flower_model.core.errors import FlowerLensError
from flower_model.core.events import CancelToken, TrainEvent, TrainingProgress, progress_of
from flower_model.core.settings import apply_settings, current_settings
from flower_model.service.jobs import Job, JobBoard, JobConflict
from flower_model.service.worker import (
    POLL_SECONDS,
    STOP_GRACE_SECONDS,
    Outcome,
    Task,
    outcome_of,
)

if TYPE_CHECKING:
    from flower_model.data.dataset import Dataset
    from flower_model.model.backbone import WeightsChoice
    from flower_model.model.config import TrainConfig
    from flower_model.runs.store import RunInfo

BOARD_NAME = "job-board"
# How long a call to the board may take before the cluster is taken as unreachable, seconds.
CALL_SECONDS = 30.0
# How often a job sends its events to the board and asks whether to stop, in seconds.
RELAY_SECONDS = 0.25


# --- in a job's Ray task -----------------------------------------------------------------


class _AskTheBoard(CancelToken):
    """A job's Stop, asked of the board at most every RELAY_SECONDS."""

    def __init__(self, board: Any, number: int) -> None:
        super().__init__()
        self.board, self.number, self.asked = board, number, 0.0

    def is_set(self) -> bool:
        if not super().is_set() and time.monotonic() - self.asked > RELAY_SECONDS:
            import ray

            self.asked = time.monotonic()
            try:
                if ray.get(self.board.stop_asked.remote(self.number), timeout=CALL_SECONDS):
                    self.cancel()
            except ray.exceptions.GetTimeoutError:
                pass  # asked again next time
        return super().is_set()


def _run_on_cluster(task: Task) -> Outcome:
    """Run one job in a Ray task: its events go to the board, in order, a few at a time."""
    import ray

    from flower_model.service.runtime import start_tensorflow

    apply_settings(task.settings)
    start_tensorflow(quiet=True)
    board = ray.get_actor(BOARD_NAME, namespace=NAMESPACE)
    waiting: deque[TrainEvent] = deque()  # appended by the job, taken by the pump: both atomic
    sending = threading.Lock()  # one batch at a time, in order
    ended = threading.Event()

    def send() -> None:
        with sending:
            batch = [waiting.popleft() for _ in range(len(waiting))]
            if batch:
                ray.get(board.relay.remote(task.number, batch), timeout=CALL_SECONDS)

    def pump() -> None:  # what the job reported goes to the board every RELAY_SECONDS
        while not ended.wait(RELAY_SECONDS):
            send()

    threading.Thread(target=pump, name="flower-lens-relay", daemon=True).start()

    def on_event(event: TrainEvent) -> None:
        waiting.append(event)

    outcome = outcome_of(task, on_event, _AskTheBoard(board, task.number))
    ended.set()
    send()
    return outcome


class ClusterWorker:
    """The board's worker when the board lives in the cluster: each job is a Ray task (no
    CPU of its own asked for: its heavy part, the features, asks for the cluster's CPUs or
    GPUs chunk by chunk, so a job waiting on them never holds what they need)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[int, Callable[[TrainEvent], None]] = {}
        self._stops: set[int] = set()

    def start(self) -> None:
        """Nothing to start: the cluster is up."""

    def close(self) -> None:
        """Nothing to close."""

    def relay(self, number: int, events: list[TrainEvent]) -> None:
        """Pass a job's events on to it."""
        with self._lock:
            listener = self._listeners.get(number)
        for event in events if listener is not None else []:
            listener(event)

    def stop_asked(self, number: int) -> bool:
        """Return whether the job of this number was asked to stop."""
        with self._lock:
            return number in self._stops

    def run(
        self,
        task: Task,
        on_event: Callable[[TrainEvent], None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Outcome:
        """Run a job as a Ray task and wait for it, relaying Stop; return its outcome."""
        import ray

        with self._lock:
            self._listeners[task.number] = on_event
        name = f"flower-lens {task.function.__name__}"
        ref = ray.remote(num_cpus=0, max_retries=0)(_run_on_cluster).options(name=name).remote(task)
        stop_asked: float | None = None
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=POLL_SECONDS)
                if ready:
                    return ray.get(ref, timeout=CALL_SECONDS)
                if stop_asked is None and cancelled():
                    with self._lock:
                        self._stops.add(task.number)
                    stop_asked = time.monotonic()
                if stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_SECONDS:
                    ray.cancel(ref, force=True)
                    return Outcome(
                        task.number, "cancelled", "stopped (its cluster worker was ended)"
                    )
        except ray.exceptions.RayError as exc:  # the worker process or its node died
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return Outcome(task.number, "failed", f"the cluster's worker stopped: {reason}")
        finally:
            with self._lock:
                self._listeners.pop(task.number, None)
                self._stops.discard(task.number)


# --- the board, in the cluster -----------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    """A job as the board last saw it (what a replica draws)."""

    job_id: str
    number: int
    kind: str
    data_root: Path
    fingerprint: str
    weights: WeightsChoice
    started: float
    events: tuple[TrainEvent, ...]
    status: str
    run_id: str | None
    error: str | None

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job.job_id, job.number, job.kind, job.data_root, job.fingerprint, job.weights,
            job.started, tuple(job.events), job.status, job.run_id, job.error,
        )  # fmt: skip


class BoardActor:
    """The cluster's job board (run as a detached Ray actor): a JobBoard whose worker is the
    cluster. Every method answers at once; FlowerLensErrors come back as (kind, message)."""

    def __init__(self) -> None:
        self.worker = ClusterWorker()
        self.board = JobBoard(self.worker)
        self._starting = threading.Lock()  # one start at a time: each with its caller's settings

    def start(self, what: str, settings: dict[str, str], *args: Any) -> tuple[str, Any]:
        """Start a job (`what`: training, audit, tune, features, background, export) with the
        replica's settings; return ("job", its view), ("none", None) or ("error", (class
        name, message))."""
        starts = {
            "training": self.board.start_training,
            "audit": self.board.start_audit,
            "tune": self.board.start_tune,
            "features": self.board.start_features,
            "background": self.board.features_in_background,
            "export": self.board.start_export,
        }
        with self._starting:
            apply_settings(settings)
            try:
                job = starts[what](*args)
            except FlowerLensError as exc:
                return "error", (type(exc).__name__, str(exc))
        return ("job", JobView.of(job)) if job is not None else ("none", None)

    def jobs(self) -> list[JobView]:
        """Return every job, newest first."""
        return [JobView.of(job) for job in self.board.jobs()]

    def running_on(self, fingerprint: str, kind: str | None = None) -> JobView | None:
        """Return the newest job working or waiting on a dataset, if any."""
        job = self.board.running_on(fingerprint, kind)
        return JobView.of(job) if job is not None else None

    def latest(self, fingerprint: str, kind: str = "training") -> JobView | None:
        """Return the most recent job of a kind on a dataset, running or ended."""
        job = self.board.latest(fingerprint, kind)
        return JobView.of(job) if job is not None else None

    def job(self, job_id: str) -> JobView | None:
        """Return one job, if the board still remembers it."""
        return next((JobView.of(j) for j in self.board.jobs() if j.job_id == job_id), None)

    def stop(self, job_id: str) -> None:
        """Stop a job (it stops after its current batch, or does not start)."""
        for job in self.board.jobs():
            if job.job_id == job_id:
                job.stop()

    def relay(self, number: int, events: list[TrainEvent]) -> None:
        self.worker.relay(number, events)

    def stop_asked(self, number: int) -> bool:
        return self.worker.stop_asked(number)


# --- what a replica holds ----------------------------------------------------------------


class ClusterJob:
    """A replica's handle on a job of the cluster's board: the view it last fetched, and
    Stop and wait, which ask the board."""

    def __init__(self, board: ClusterJobBoard, view: JobView) -> None:
        self._board, self.view = board, view

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterJob) and other.view.job_id == self.view.job_id

    def __hash__(self) -> int:
        return hash(self.view.job_id)

    @property
    def running(self) -> bool:
        return self.view.status in ("waiting", "running")

    def refresh(self) -> None:
        """Fetch the job as the board sees it now (a page draws a job again and again)."""
        view = self._board.call("job", self.view.job_id)
        if view is not None:
            self.view = view

    def progress(self) -> TrainingProgress:
        """Return the job's state for drawing, as the board sees it now."""
        self.refresh()
        return progress_of(
            list(self.view.events), self.view.status, self.view.run_id, self.view.error
        )

    def stop(self) -> None:
        self._board.call("stop", self.view.job_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has ended (asking the board every POLL_SECONDS); return whether
        it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if not self.running:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)


class ClusterJobBoard:
    """The job board as a replica sees it when the app runs on a cluster: every call goes to
    the cluster's board (started by the first replica, found by name by the others)."""

    def __init__(self, address: str | None = None) -> None:
        import ray

        connect(address)
        actor = ray.remote(num_cpus=0, max_concurrency=16, max_restarts=-1)(BoardActor)
        self._actor = actor.options(
            name=BOARD_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote()

    def call(self, method: str, *args: Any) -> Any:
        """Call the board; raise ClusterError in one line if it does not answer."""
        import ray

        try:
            return ray.get(getattr(self._actor, method).remote(*args), timeout=CALL_SECONDS)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise ClusterError(
                f"the cluster's job board did not answer: {type(exc).__name__}"
            ) from exc

    def _start(self, what: str, *args: Any) -> ClusterJob | None:
        kind, value = self.call("start", what, current_settings(), *args)
        if kind == "error":
            name, message = value
            if name == "JobConflict":
                raise JobConflict(message)
            raise FlowerLensError(message)
        return ClusterJob(self, value) if kind == "job" else None

    def jobs(self) -> list[ClusterJob]:
        return [ClusterJob(self, view) for view in self.call("jobs")]

    def running_on(self, fingerprint: str, kind: str | None = None) -> ClusterJob | None:
        view = self.call("running_on", fingerprint, kind)
        return ClusterJob(self, view) if view is not None else None

    def latest(self, fingerprint: str, kind: str = "training") -> ClusterJob | None:
        view = self.call("latest", fingerprint, kind)
        return ClusterJob(self, view) if view is not None else None

    def start_training(
        self,
        dataset: Dataset,
        config: TrainConfig,
        train_fn: Callable | None = None,
        trained_on: Dataset | None = None,
        owner: str = "",
    ) -> ClusterJob:
        return self._start("training", dataset, config, train_fn, trained_on, owner)

    def start_audit(self, dataset: Dataset, weights: str = "imagenet") -> ClusterJob:
        return self._start("audit", dataset, weights)

    def start_tune(
        self,
        dataset: Dataset,
        config: TrainConfig,
        trials: int,
        seconds: float | None = None,
        dropout: bool = False,
    ) -> ClusterJob:
        return self._start("tune", dataset, config, trials, seconds, dropout)

    def start_features(self, dataset: Dataset, weights: str = "imagenet") -> ClusterJob:
        return self._start("features", dataset, weights)

    def features_in_background(self, dataset: Dataset, weights: str) -> ClusterJob | None:
        return self._start("background", dataset, weights)

    def start_export(self, run: RunInfo, fmt: str) -> ClusterJob:
        return self._start("export", run, fmt)

    def close(self) -> None:
        """Nothing to close: the board outlives every replica."""


def end_board() -> None:
    """End the cluster's job board, forgetting its jobs (for tools and tests; the next
    replica to ask starts a new one)."""
    import ray

    connect()
    with contextlib.suppress(ValueError):  # there was none
        ray.kill(ray.get_actor(BOARD_NAME, namespace=NAMESPACE), no_restart=True)
