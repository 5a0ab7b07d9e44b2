"""Delete what a person no longer wants, with everything kept because of it, and what the
host prunes: old runs, and caches nothing wrote for a while."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from flower_model.core import workspace
from flower_model.export.exporter import forget_app_exports
from flower_model.runs.store import delete_run, list_runs

# The workspace's caches: whatever they hold is computed again when next needed.
CACHE_FOLDERS = ("features", "scans", "audits", "near-duplicates", "exports")
DAY = 86400


def remove_run(run_id: str, owner: str | None = None) -> None:
    """Delete a saved run and the app's exports of it: with an `owner` (a visitor), only if
    they trained it (None: the host); raise RunError saying why not, before anything goes."""
    delete_run(run_id, owner=owner)
    forget_app_exports(run_id)


def prune_runs(days: float, trained_by: str | None = None) -> list[str]:
    """Delete the runs trained more than `days` ago (only `trained_by`'s, as listed: an
    owner, or "(the host)"), with their exports; return their ids."""
    cutoff = time.time() - days * DAY
    pruned = [
        info.run_id
        for info in list_runs()
        if info.trained_at < cutoff and trained_by in (None, info.owner or "(the host)")
    ]
    for run_id in pruned:
        remove_run(run_id)
    return pruned


def _newest(path: Path) -> float:
    """Return the latest modification time of a file, or of anything inside a folder."""
    stamps = [path.stat().st_mtime]
    if path.is_dir():
        stamps += [p.stat().st_mtime for p in path.rglob("*")]
    return max(stamps)


def prune_caches(days: float) -> tuple[int, int]:
    """Delete each cache entry (a file or folder in a cache folder) nothing wrote for `days`;
    return the bytes freed and how many entries went."""
    cutoff = time.time() - days * DAY
    freed = count = 0
    for name in CACHE_FOLDERS:
        folder = workspace.home_dir() / name
        for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
            with contextlib.suppress(OSError):  # another process removed it meanwhile
                if _newest(entry) >= cutoff:
                    continue
                size = workspace.bytes_under(entry) if entry.is_dir() else entry.stat().st_size
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                freed, count = freed + size, count + 1
    return freed, count
