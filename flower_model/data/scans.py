"""What the scans of a dataset folder found of each file, kept in the workspace in segments.

A file is known by its stamp (path under the folder, size, modification time): a rescan reads
only the files whose stamp it does not know. The store is a folder of segments, each a JSON
file of columns (one list per field: 100,000 photos decode three times faster than as a list
of objects). A rescan that found a few new files writes a segment of those alone, so adding
1,000 photos to 100,000 does not rewrite the 100,000; when the segments hold many rows of files
gone or changed, or many segments, the next write compacts them into one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flower_model.core import workspace

# Bump when a segment's fields change, so that old segments are not read.
SCANS_VERSION = 3
# A new segment is written while the rows to add and the stale rows kept stay under this
# share of the folder's files, and the segments under this count; otherwise one compacted.
APPEND_SHARE = 0.25
MAX_SEGMENTS = 16

# A file as scanned: its path under the folder, size and modification time (ns).
FileStamp = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Found:
    """What a scan found of a usable photo."""

    class_name: str
    sha256: str
    width: int
    height: int
    size_bytes: int


# What a scan found of a file: the photo, or None and why it cannot be used.
Finding = tuple[Found | None, str | None]
_FIELDS = ("class_name", "sha256", "width", "height", "size_bytes")


def store_of(root: Path) -> Path:
    """Return the folder in the workspace that keeps what the scans of `root` found."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return workspace.scans_dir() / digest


def _segments(store: Path) -> list[Path]:
    try:
        return sorted(p for p in store.iterdir() if p.suffix == ".json")
    except OSError:
        return []


def _decode(path: Path) -> dict[FileStamp, Finding]:
    value = json.loads(path.read_bytes())
    if value.get("version") != SCANS_VERSION:
        return {}
    stamps = zip(value["path"], value["size"], value["mtime"], strict=True)
    columns = [value[field] for field in _FIELDS]
    found = (
        Found(*fields) if fields[0] is not None else None for fields in zip(*columns, strict=True)
    )
    return dict(zip(stamps, zip(found, value["reason"], strict=True), strict=True))


@dataclass(frozen=True)
class Known:
    """The findings read from a store, and the segments they came from."""

    findings: dict[FileStamp, Finding]
    segments: tuple[Path, ...]
    rows: int  # rows in the segments, stale ones included


def read(store: Path) -> Known:
    """Return what the segments of a store hold (a later segment's finding wins). A segment
    that cannot be read, or of an older version, adds nothing (its files are read again) and
    goes at the next compaction."""
    findings: dict[FileStamp, Finding] = {}
    segments = _segments(store)
    rows = 0
    for segment in segments:
        try:
            part = _decode(segment)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        findings.update(part)
        rows += len(part)
    return Known(findings, tuple(segments), rows)


def _encode(findings: Iterable[tuple[FileStamp, Finding]]) -> bytes:
    columns: dict[str, list] = {name: [] for name in ("path", "size", "mtime", *_FIELDS, "reason")}
    for (path, size, mtime), (found, reason) in findings:
        columns["path"].append(path)
        columns["size"].append(size)
        columns["mtime"].append(mtime)
        for field in _FIELDS:
            columns[field].append(getattr(found, field) if found is not None else None)
        columns["reason"].append(reason)
    return json.dumps({"version": SCANS_VERSION, **columns}).encode()


def _segment_name() -> str:
    # Sorted by time, unique across processes and threads.
    return f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}.json"


def write(store: Path, known: Known, live: Mapping[FileStamp, Finding], new: Iterable[FileStamp]):
    """Keep the findings of the folder's files now (`live`): a segment of the `new` ones
    alone, or all of them in one segment that replaces the segments read. A full disk or a
    read-only workspace loses only the time of reading those files again next time."""
    new = list(new)
    stale = known.rows - (len(live) - len(new))
    small = len(new) + stale <= APPEND_SHARE * max(len(live), 1)
    what = "a folder's scan"
    if known.segments and small and len(known.segments) < MAX_SEGMENTS:
        if new:
            workspace.write_cache(store / _segment_name(), _encode((s, live[s]) for s in new), what)
        return
    if not new and stale == 0 and len(known.segments) == 1:
        return
    if not workspace.write_cache(store / _segment_name(), _encode(live.items()), what):
        return
    with contextlib.suppress(OSError):
        for segment in known.segments:  # others' segments written since are kept
            segment.unlink(missing_ok=True)
        store.with_suffix(".json").unlink(missing_ok=True)  # the one file of version 2


def bytes_used(store: Path) -> int:
    """Return the bytes a store's segments take on disk."""
    return sum(p.stat().st_size for p in _segments(store))
