"""The worker process: heavy jobs run there, one at a time, away from the web server.

A training in the server's own process competed with every page redraw for the interpreter
(one Train tab open made a 20-second training take 37 s, two tabs 91–174 s, and the health
check took seconds to answer). In a process of its own, it has the interpreter to itself,
and the server only relays its events. Jobs run one after the other: on a 2-core machine two
ResNet50 extractions at once would each take twice as long and hold twice the memory.

The worker is a pebble process pool of one process, started with the job board (once per
server) and kept: TensorFlow is loaded before the first click on Train, and once. pebble
runs each task there and tells when the process died (killed, out of memory): its job is
reported as failed and the next job starts a new pool. A Stop is asked of the task first
(it stops after its current batch); one that does not listen is cancelled through pebble,
which ends the process. The worker exits by itself when the server that started it is gone.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pebble

from flower_model.core.events import CancelToken, TrainEvent
from flower_model.core.settings import apply_settings, current_settings

# How often the server looks for a Stop while it waits for the worker's events, in seconds.
POLL_SECONDS = 0.1
# How long a task may take to honour Stop before its worker is killed, in seconds.
STOP_GRACE_SECONDS = 30.0
# How long the outcome of a task that ended may take to come back from the worker, in seconds.
RESULT_SECONDS = 60.0
# What a task sends after its last event: its outcome follows through pebble.
_END = "end"


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
    settings: dict[str, str] = field(default_factory=current_settings)


@dataclass(frozen=True)
class Outcome:
    """How a task ended: done (with the run id, if any), cancelled, failed or interrupted
    (its process died), with why."""

    number: int
    status: str
    value: str | None


class _StopWhenAsked(CancelToken):
    """The worker's side of Stop: set when the server names this task, or when it is gone."""

    def __init__(self, number: int, cancel_number: Any, parent: int) -> None:
        super().__init__()
        self.number, self.cancel_number, self.parent = number, cancel_number, parent

    def is_set(self) -> bool:
        return (
            super().is_set()
            or self.cancel_number.value == self.number
            or os.getppid() != self.parent
        )


@dataclass(frozen=True)
class _Link:
    """What the worker process shares with its server: the events queue and the number of
    the task asked to stop (lock-free: a process killed while holding a lock would block
    every Stop after it)."""

    events: Any
    cancel_number: Any
    parent: int


_link: list[_Link] = []  # the worker process's own link, set once when it starts


def warm_up_tensorflow() -> None:
    """Load TensorFlow quietly and trace the head's loop, so that the first click on Train
    finds them ready (measured: 4.4 s to 3.9 s from the click to the first curves)."""
    from flower_model.service.runtime import settle_objects, start_tensorflow

    start_tensorflow(quiet=True)  # Keras' "retracing" warnings, expected here, are off too
    try:
        from flower_model.model.fitting import warm_up

        warm_up()
    except Exception:  # a warm-up only: the first job pays for it instead
        pass
    settle_objects()  # what the warm-up built lives on: no collection walks it again


def _start(link: _Link, warm_up: Callable[[], None] | None) -> None:
    """Start the worker process: keep its link to the server, then warm up."""
    _link.append(link)
    if warm_up is not None:
        warm_up()


def _ready() -> int:
    """Return the worker's process id (a first task: it starts the pool)."""
    return os.getpid()


def outcome_of(task: Task, on_event: Callable[[TrainEvent], None], cancel: CancelToken) -> Outcome:
    """Run a task's function with its events and Stop; return how it ended (a failure is
    reported, not raised: whoever runs tasks serves the next one)."""
    from flower_model.core.errors import TrainingCancelled
    from flower_model.core.workspace import describe_failure

    try:
        value = task.function(*task.args, on_event=on_event, cancel=cancel)
        return Outcome(task.number, "done", value)
    except TrainingCancelled as exc:
        return Outcome(task.number, "cancelled", str(exc))
    except Exception as exc:  # reported to the page
        return Outcome(task.number, "failed", describe_failure(exc))


def _run_task(task: Task) -> Outcome:
    """Run one task in the worker, sending its events, then the end mark; return its outcome."""
    link = _link[-1]
    apply_settings(task.settings)
    cancel = _StopWhenAsked(task.number, link.cancel_number, link.parent)
    outcome = outcome_of(task, lambda e: link.events.put((task.number, e)), cancel)
    link.events.put((task.number, _END))
    return outcome


class Worker:
    """The server's handle on its worker process (a pebble pool of one, started when first
    needed, and again after it died or was ended)."""

    def __init__(self, warm_up: Callable[[], None] | None = warm_up_tensorflow) -> None:
        self._context = multiprocessing.get_context("spawn")  # never fork a TensorFlow process
        self._warm_up = warm_up
        self._lock = threading.Lock()
        self._pool: pebble.ProcessPool | None = None
        self._events: Any = None
        self._cancel_number: Any = None

    def start(self) -> None:
        """Start the worker now, so that it has loaded TensorFlow by the first job."""
        self._started()

    def _started(self) -> pebble.ProcessPool:
        with self._lock:
            if self._pool is None:
                # A new queue and stop number for each pool: the last process may have been
                # killed while it held the queue's lock.
                self._events = self._context.Queue()
                self._cancel_number = self._context.RawValue("q", 0)
                link = _Link(self._events, self._cancel_number, os.getpid())
                self._pool = pebble.ProcessPool(
                    max_workers=1,
                    initializer=_start,
                    initargs=(link, self._warm_up),
                    context=self._context,
                )
                self._pool.schedule(_ready)
            return self._pool

    def _discard_pool(self) -> None:
        """End the pool (its process is dead or stuck): the next task starts a new one."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # pebble ends a process still working: SIGTERM, then SIGKILL
            pool.join()

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
        pickle.dumps(task)  # fails here, not silently in pebble's channel
        future = self._started().schedule(_run_task, args=(task,))
        events, cancel_number = self._events, self._cancel_number
        stop_asked: float | None = None
        while True:
            if stop_asked is None and cancelled():
                cancel_number.value = task.number
                stop_asked = time.monotonic()
            if stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_SECONDS:
                # The task does not look at its cancel token (stuck loading, say): the jobs
                # behind it must not wait for ever.
                future.cancel()
                self._discard_pool()
                return Outcome(
                    task.number, "cancelled", "stopped (the worker process was restarted)"
                )
            try:
                number, item = events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if future.done():  # ended without its end mark: the process died
                    return self._ended(task, future)
                continue
            if number != task.number:
                continue  # a late event of an earlier task
            if item == _END:
                return self._ended(task, future)
            on_event(item)

    def _ended(self, task: Task, future: pebble.ProcessFuture) -> Outcome:
        """Return the outcome of a task whose events have all come."""
        try:
            return future.result(timeout=RESULT_SECONDS)
        except pebble.ProcessExpired as exc:
            self._discard_pool()
            return Outcome(
                task.number,
                "interrupted",
                f"the worker process stopped unexpectedly (exit code {exc.exitcode}); "
                "the next job starts a new one",
            )
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError) as exc:
            self._discard_pool()
            return Outcome(task.number, "failed", f"the worker process did not answer ({exc})")

    def close(self) -> None:
        """Let the worker finish its task and exit."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                pool.join(30)
            except TimeoutError:
                pool.stop()
                pool.join()
