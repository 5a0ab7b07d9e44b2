"""Where runs, feature caches and dataset scans live: one folder, set by one variable."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

HOME_ENV = "FLOWER_LENS_HOME"
# The dataset folder the CLI and the app use when none is chosen.
DATA_ENV = "FLOWER_LENS_DATA"
DEFAULT_HOME = Path(__file__).resolve().parents[2] / "workspace"  # beside flower_model/


def home_dir() -> Path:
    """Return the workspace folder: $FLOWER_LENS_HOME, or `workspace/` beside the package."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def runs_dir() -> Path:
    """Return the folder holding one sub-folder per training run."""
    return home_dir() / "runs"


def features_dir() -> Path:
    """Return the folder of the on-disk feature cache."""
    return home_dir() / "features"


def scans_dir() -> Path:
    """Return the folder of cached dataset scans."""
    return home_dir() / "scans"


def datasets_dir() -> Path:
    """Return the folder of the datasets visitors uploaded, one sub-folder each."""
    return home_dir() / "datasets"


def decisions_dir() -> Path:
    """Return the folder of the decisions made about datasets' photos, one file per folder."""
    return home_dir() / "decisions"


def near_duplicates_dir() -> Path:
    """Return the folder of the near-duplicate searches done, one file per photos and features."""
    return home_dir() / "near-duplicates"


def audits_dir() -> Path:
    """Return the folder of finished data audits, one file per dataset and features."""
    return home_dir() / "audits"


def videos_dir() -> Path:
    """Return where the videos visitors play on Classify's live view are kept (a few)."""
    return home_dir() / "videos"


def searches_dir() -> Path:
    """Return where each dataset's latest search of its training settings (Tune) is kept."""
    return home_dir() / "searches"


# A temporary file of write_atomic untouched this long was left by a process that died.
STALE_TEMPORARY_SECONDS = 3600.0


def remove_stale_temporaries(root: Path | None = None) -> int:
    """Remove write_atomic's temporary files that a killed process left in the workspace;
    return how many. Recent ones may belong to a write in progress and are kept."""
    root = root or home_dir()
    removed, now = 0, time.time()
    for path in root.rglob(".*.tmp") if root.is_dir() else []:
        try:
            if now - path.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def describe_failure(exc: BaseException) -> str:
    """Return what a failure means for a person: a full disk says which and what to do."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk holding the workspace ({home_dir()}) is full: free some space there, or "
            f"set ${HOME_ENV} to a folder on a larger disk (nothing half-written was kept)"
        )
    return str(exc) or type(exc).__name__


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so that a reader sees the old content or the new, never a part of it.

    The data goes to a temporary file of its own beside the target (unique across the threads
    of a server and across processes), which then replaces the target.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bytes_under(folder: Path) -> int:
    """Return the size of the files under a folder (0 while it does not exist)."""
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else []:
        with contextlib.suppress(OSError):  # a file renamed or removed meanwhile
            if path.is_file():
                total += path.stat().st_size
    return total


class _Unwritten:
    """The last cache this process could not write, until one is written again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.why: str | None = None

    def failed(self, what: str, exc: OSError) -> None:
        why = describe_failure(exc)
        with self._lock:
            first = self.why is None
            self.why = why
        if first:  # once until the disk has room again, not at every page run
            log.warning("Flower Lens: %s not saved, and caches are skipped until one is: %s",
                        what, why)  # fmt: skip

    def written(self) -> None:
        with self._lock:
            self.why = None


_UNWRITTEN = _Unwritten()


def write_cache(path: Path, data: bytes | str, what: str) -> bool:
    """Write a cache file atomically (`write_atomic`); return whether it was written.

    A cache that cannot be written (a full disk, a read-only workspace) costs only the time
    of computing it again: the failure is logged once for the host, the pages say it in one
    line (`unwritten_caches`), and nothing else changes.
    """
    try:
        write_atomic(path, data)
    except OSError as exc:
        _UNWRITTEN.failed(what, exc)
        return False
    _UNWRITTEN.written()
    return True


def unwritten_caches() -> str | None:
    """Return why this process's caches are not being saved now, or None if they are."""
    return _UNWRITTEN.why


def recalled(file_name: str, key: str) -> object | None:
    """Return the fact remembered under `key` in a workspace file of facts, or None (also
    for a missing or damaged file: a fact can always be found out again)."""
    try:
        facts = json.loads((home_dir() / file_name).read_text())
    except (OSError, ValueError):
        return None
    return facts.get(key) if isinstance(facts, dict) else None


def remember(file_name: str, key: str, value: object) -> None:
    """Remember a fact under `key` in a workspace file of facts (an atomic write).

    The read-modify-write holds a lock file beside the facts: the server and its worker
    process both remember facts, and each write must keep the other's."""
    from filelock import FileLock

    target = home_dir() / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(f".{target.name}.lock"), timeout=30):
        try:
            facts = json.loads(target.read_text())
            if not isinstance(facts, dict):
                facts = {}
        except (OSError, ValueError):
            facts = {}
        facts[key] = value
        write_atomic(target, json.dumps(facts, indent=1))
