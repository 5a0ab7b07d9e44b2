"""Locks that the processes sharing a workspace take before work only one of them should do.

Two servers on one `$FLOWER_LENS_HOME` (replicas behind a load balancer), or a server and the
command line, would otherwise compute the same dataset's features twice, or one would remove
the other's export in progress. Each such piece of work holds a lock file in the workspace's
`locks/` folder while it runs; the operating system frees it when its process ends, killed or
not, so a lock is never left behind.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flower_model.core.errors import FlowerLensError, TrainingCancelled
from flower_model.core.workspace import home_dir

# How often a waiting process looks whether the lock is free, or it was asked to stop.
POLL_SECONDS = 0.25


def locks_dir() -> Path:
    """Return the folder of the workspace's lock files."""
    return home_dir() / "locks"


def lock_path(what: str) -> Path:
    """Return the lock file of a piece of work, named by what it is (any text)."""
    digest = hashlib.sha256(what.encode()).hexdigest()[:24]
    kind = "".join(c if c.isalnum() else "-" for c in what.split(":", 1)[0])[:20]
    return locks_dir() / f"{kind}-{digest}.lock"


def is_held(what: str) -> bool:
    """Return whether some process holds the lock of a piece of work now."""
    from filelock import FileLock, Timeout

    path = lock_path(what)
    if not path.exists():
        return False
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def holding(
    what: str,
    cancelled: Callable[[], bool] | None = None,
    on_wait: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> Iterator[bool]:
    """Hold the lock of a piece of work while the block runs; yield whether another process
    held it first (then its work may be done: look again before doing it).

    While another process holds it, `on_wait()` is called once, and the wait ends with
    TrainingCancelled when `cancelled()` turns true, or FlowerLensError after `timeout`
    seconds. The lock is reentrant within a thread, and excludes the other threads.
    """
    from filelock import FileLock, Timeout

    path = lock_path(what)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, is_singleton=True)
    started, waited = time.monotonic(), False
    while True:
        try:
            lock.acquire(timeout=POLL_SECONDS if waited else 0)
            break
        except Timeout:
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if cancelled is not None and cancelled():
                raise TrainingCancelled("stopped while waiting for another process") from None
            if timeout is not None and time.monotonic() - started > timeout:
                raise FlowerLensError(
                    f"another process has held {path.name} for over {timeout:.0f} s: "
                    "try again later"
                ) from None
    try:
        yield waited
    finally:
        lock.release()
