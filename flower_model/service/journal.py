"""The jobs a server has running or waiting, kept in the workspace so that none is lost
silently: after a restart (or a crash), the next server finds what the last one left
unfinished and shows it as interrupted, with what is needed to ask for it again.

Each server process writes its own journal file and holds a lock on it for its life; the
operating system frees the lock when the process ends, killed or not. A journal whose lock is
free belongs to a process that is gone: the next board to start reads it and removes it.
Replicas on one workspace never take each other's living jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flower_model.core import workspace

log = logging.getLogger(__name__)

JOURNALS_FOLDER = "journal"


@dataclass(frozen=True)
class Asked:
    """A job as it was asked for: enough to ask for it again, and to say what it was."""

    kind: str  # training, tune, features, audit or export
    data_root: str  # the dataset folder (an export: the run's folder)
    fingerprint: str  # what the board keys the job by
    asked_at: float  # when it was asked for (time.time())
    settings: dict = field(default_factory=dict)  # the kind's own: a TrainConfig as JSON...
    owner: str = ""  # who asked, where the server knows

    def to_json(self) -> dict:
        """Return the request as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> Asked:
        """Rebuild a request read from a journal."""
        return cls(
            kind=str(value["kind"]),
            data_root=str(value["data_root"]),
            fingerprint=str(value["fingerprint"]),
            asked_at=float(value["asked_at"]),
            settings=dict(value.get("settings") or {}),
            owner=str(value.get("owner") or ""),
        )


def journals_dir() -> Path:
    """Return the folder of the servers' journals."""
    return workspace.home_dir() / JOURNALS_FOLDER


class Journal:
    """This process's journal: the jobs it has running or waiting, by job id (thread-safe).

    A journal that cannot be written (a full disk) is skipped with a warning in the log: the
    jobs run all the same; only their trace after a restart is lost.
    """

    def __init__(self, folder: Path | None = None) -> None:
        from filelock import FileLock

        self.folder = folder or journals_dir()
        self.path = self.folder / f"{os.getpid()}-{time.time_ns()}.json"
        self._entries: dict[str, Asked] = {}
        self._lock = threading.Lock()
        self._held = FileLock(self.path.with_suffix(".lock"))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._held.acquire(timeout=0)
        except OSError as exc:
            log.warning("the jobs journal %s cannot be kept: %s", self.path, exc)

    def add(self, job_id: str, asked: Asked) -> None:
        """Note a job asked for (waiting or running)."""
        with self._lock:
            self._entries[job_id] = asked
            self._write()

    def remove(self, job_id: str) -> None:
        """Forget a job that ended."""
        with self._lock:
            if self._entries.pop(job_id, None) is not None:
                self._write()

    def _write(self) -> None:
        entries = {job_id: asked.to_json() for job_id, asked in self._entries.items()}
        try:
            workspace.write_atomic(self.path, json.dumps(entries))
        except OSError as exc:
            log.warning("the jobs journal %s was not written: %s", self.path, exc)

    def close(self) -> None:
        """Remove this journal (its process ends cleanly with no job left)."""
        with self._lock:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            self._held.release()
            with contextlib.suppress(OSError):
                self.path.with_suffix(".lock").unlink(missing_ok=True)


def left_behind(folder: Path | None = None) -> list[Asked]:
    """Return the jobs of the journals whose process is gone, oldest first, and remove those
    journals: each unfinished job is found once, by the first board to start after."""
    from filelock import FileLock, Timeout

    folder = folder or journals_dir()
    found: list[Asked] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        lock = FileLock(path.with_suffix(".lock"))
        try:
            lock.acquire(timeout=0)
        except (Timeout, OSError):
            continue  # its process is alive (another replica), or the lock cannot be taken
        try:
            try:
                entries = json.loads(path.read_text())
                found.extend(Asked.from_json(value) for value in entries.values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("an unreadable jobs journal %s was removed: %s", path, exc)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        finally:
            lock.release()
            with contextlib.suppress(OSError):
                path.with_suffix(".lock").unlink(missing_ok=True)
    return sorted(found, key=lambda asked: asked.asked_at)
