"""The worker process: heavy jobs run there, one at a time, away from the web server.

A training in the server's own process competed with every page redraw for the interpreter
(one Train tab open made a 20-second training take 37 s, two tabs 91–174 s, and the health
check took seconds to answer). In a process of its own, it has the interpreter to itself,
and the server only relays its events. Jobs run one after the other: on a 2-core machine two
ResNet50 extractions at once would each take twice as long and hold twice the memory.

The worker is started with the job board (once per server) and kept: TensorFlow is loaded
before the first click on Train, and once. If
it dies (killed, out of memory), its job is reported as failed and the next job starts a new
one. It exits by itself when the server that started it is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flower_model.core.events import CancelToken, TrainEvent

# How often the server looks for a Stop while it waits for the worker's events, in seconds.
POLL_SECONDS = 0.1
# How long a task may take to honour Stop before its worker is killed, in seconds.
STOP_GRACE_SECONDS = 30.0
# How often the worker checks that its server is still there while idle, in seconds.
PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Task:
    """One job for the worker: a function importable by the worker, and its arguments.

    The function is called as `function(*args, on_event=..., cancel=...)` and returns a run id
    or None.
    """

    number: int
    function: Callable[..., Any]
    args: tuple
    # The app's settings when the job was asked for ($FLOWER_LENS_HOME, …): the worker,
    # started once, runs each job with the settings of its time.
    settings: dict[str, str] = field(default_factory=lambda: _settings())


# The environment variables that are the app's settings, passed to the worker with each task.
SETTINGS_PREFIXES = ("FLOWER_LENS_", "KERAS_HOME", "KAGGLEHUB_CACHE")


def _settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(SETTINGS_PREFIXES)}


def _apply_settings(settings: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith(SETTINGS_PREFIXES)]:
        del os.environ[key]
    os.environ.update(settings)


@dataclass(frozen=True)
class Outcome:
    """How a task ended: done (with the run id, if any), cancelled or failed (with why)."""

    number: int
    status: str
    value: str | None


class _StopWhenAsked(CancelToken):
    """The worker's side of Stop: set when the server names this task, or when it is gone."""

    def __init__(self, number: int, cancel_number: Any, parent: int) -> None:
        super().__init__()
        self._number, self._cancel_number, self._parent = number, cancel_number, parent

    def is_set(self) -> bool:
        return (
            super().is_set()
            or self._cancel_number.value == self._number
            or os.getppid() != self._parent
        )


def _serve(tasks: Any, events: Any, cancel_number: Any, parent: int) -> None:
    """Run tasks as they come, sending each one's events and then its outcome."""
    from flower_model.core.errors import TrainingCancelled
    from flower_model.core.workspace import describe_failure
    from flower_model.service.runtime import settle_objects, start_tensorflow

    start_tensorflow(quiet=True)  # Keras' "retracing" warnings, expected here, are off too
    try:  # the first click on Train finds the loop traced (measured: 4.4 s to 3.9 s to curves)
        from flower_model.model.fitting import warm_up

        warm_up()
    except Exception:  # a warm-up only: the first job pays for it instead
        pass
    settle_objects()  # what the warm-up built lives on: no collection walks it again
    while os.getppid() == parent:
        try:
            task: Task | None = tasks.get(timeout=PARENT_CHECK_SECONDS)
        except queue.Empty:
            continue
        if task is None:
            return
        _apply_settings(task.settings)
        cancel = _StopWhenAsked(task.number, cancel_number, parent)
        try:
            value = task.function(
                *task.args, on_event=lambda e, n=task.number: events.put((n, e)), cancel=cancel
            )
            outcome = Outcome(task.number, "done", value)
        except TrainingCancelled as exc:
            outcome = Outcome(task.number, "cancelled", str(exc))
        except Exception as exc:  # reported to the page; the worker serves the next task
            outcome = Outcome(task.number, "failed", describe_failure(exc))
        events.put((task.number, outcome))


class Worker:
    """The server's handle on its worker process (started when first needed)."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")  # never fork a TensorFlow process
        self._lock = threading.Lock()
        self._process: Any = None
        self._tasks: Any = None
        self._events: Any = None
        self._cancel_number: Any = None

    def start(self) -> None:
        """Start the worker now, so that it has loaded TensorFlow by the first job."""
        self._ensure_started()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._process is not None and self._process.is_alive():
                return
            self._tasks = self._context.Queue()
            self._events = self._context.Queue()
            # Lock-free: a worker killed while holding a lock would block every Stop after.
            self._cancel_number = self._context.RawValue("q", 0)
            self._process = self._context.Process(
                target=_serve,
                args=(self._tasks, self._events, self._cancel_number, os.getpid()),
                name="flower-lens-worker",
                daemon=True,
            )
            self._process.start()

    def run(
        self,
        task: Task,
        on_event: Callable[[TrainEvent], None],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Outcome:
        """Run a task in the worker, passing its events on as they come; return its outcome.
        When `cancelled()` turns true, the task is asked to stop after its current batch.

        One task at a time: the caller (the job board's dispatcher) waits for each.
        """
        pickle.dumps(task)  # fails here, not silently in the queue's feeder thread
        self._ensure_started()
        self._tasks.put(task)
        stop_asked: float | None = None
        while True:
            if stop_asked is None and cancelled():
                self._cancel_number.value = task.number
                stop_asked = time.monotonic()
            if stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_SECONDS:
                # The task does not look at its cancel token (stuck loading, say): the jobs
                # behind it must not wait for ever.
                self._process.kill()
                self._process.join(10)
                return Outcome(
                    task.number, "cancelled", "stopped (the worker process was restarted)"
                )
            try:
                number, item = self._events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not self._process.is_alive():
                    code = self._process.exitcode
                    return Outcome(
                        task.number,
                        "failed",
                        f"the worker process stopped unexpectedly (exit code {code}); "
                        "the next job starts a new one",
                    )
                continue
            if number != task.number:
                continue  # a late event of an earlier task
            if isinstance(item, Outcome):
                return item
            on_event(item)

    @property
    def pid(self) -> int | None:
        """Return the worker's process id, if it runs."""
        return self._process.pid if self._process is not None else None

    def close(self) -> None:
        """Let the worker finish its task and exit."""
        if self._process is not None and self._process.is_alive():
            self._tasks.put(None)
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
