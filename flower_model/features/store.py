"""Rows of features on disk, appended to a few large files and read memory-mapped.

A store is a folder of segments. A segment is two files written side by side: the rows
(`NNNNNN.f16` or `NNNNNN.f32`, raw little-endian numbers, one row of `width` per photo) and
their keys (`NNNNNN.key`, 32 bytes per row: a photo's SHA-256). The keys are written after
their rows, so every key on disk has its row; a row without a key (a process killed between
the two writes) is cut off by the next writer. Writers append under a cross-process file lock
(the app's worker and a command line may extract at the same time); readers take no lock and
map each segment's rows up to its last key.

100,000 photos' float16 features are 400 MB in about 25 files: on disk 1.008 times the
features' size (a key is 32 bytes beside 4,096), where one `.npy` file per photo took twice
that on a 4 KB-block file system, and a dataset's rows are gathered from the mapped files
with one indexing per segment, not read photo by photo.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KEY_BYTES = 32  # a SHA-256 digest
KEY_SUFFIX = ".key"
ROW_SUFFIXES = {".f16": np.dtype("<f2"), ".f32": np.dtype("<f4")}
# A segment takes rows until it holds this many (64 MB of float16 features), then the next
# one starts: small enough to rewrite or copy, large enough to be a few files at 100,000.
SEGMENT_ROWS = 16_384
# A read of at least this many rows of a segment lets go of the pages it mapped.
RELEASED_AFTER_ROWS = 4096
LOCK_FILE = "write.lock"
LOCK_TIMEOUT_SECONDS = 120.0  # another process's append is a batch of rows: milliseconds


@dataclass
class _Segment:
    """One segment as this process last read it: its rows mapped up to its last key."""

    number: int
    dtype: np.dtype
    rows: int = 0
    mapped: np.ndarray | None = None  # the rows, a view of `mapping`
    mapping: mmap.mmap | None = None
    first_key: bytes = b""  # to notice a segment rewritten under this process

    def stem(self, folder: Path) -> Path:
        return folder / f"{self.number:06d}"

    def row_path(self, folder: Path) -> Path:
        suffix = next(s for s, d in ROW_SUFFIXES.items() if d == self.dtype)
        return self.stem(folder).with_suffix(suffix)


@dataclass
class _Index:
    """Where each key's row is, as far as this process has read the segments."""

    segments: dict[int, _Segment] = field(default_factory=dict)
    where: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # key -> (segment, row)
    lock: threading.Lock = field(default_factory=threading.Lock)


_INDEXES: dict[Path, _Index] = {}
_INDEXES_LOCK = threading.Lock()


def _index_of(folder: Path) -> _Index:
    with _INDEXES_LOCK:
        return _INDEXES.setdefault(folder.resolve(), _Index())


def forget_indexes() -> None:
    """Forget what this process read of every store (a test that rewrites files under it)."""
    with _INDEXES_LOCK:
        _INDEXES.clear()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class RowStore:
    """Rows of `width` numbers by 32-byte key, in append-only segments under `folder`."""

    def __init__(self, folder: Path, width: int) -> None:
        self.folder = folder
        self.width = width
        self._index = _index_of(folder)

    def _refresh(self) -> None:
        """Read the keys written since this process last looked (by any process)."""
        index = self._index
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            entries = []
        listed: dict[int, tuple[os.DirEntry, np.dtype]] = {}
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix in ROW_SUFFIXES and stem.isdigit():
                listed[int(stem)] = (entry, ROW_SUFFIXES[suffix])
        for number, (entry, dtype) in sorted(listed.items()):
            segment = index.segments.get(number)
            if segment is None:
                segment = index.segments[number] = _Segment(number, dtype)
            keys = segment.stem(self.folder).with_suffix(KEY_SUFFIX)
            row_bytes = self.width * segment.dtype.itemsize
            rows = min(_size(keys) // KEY_BYTES, _size(Path(entry.path)) // row_bytes)
            if rows < segment.rows or segment.dtype != dtype:
                return self._reread()  # files removed or rewritten under this process
            if rows == 0:
                continue
            with keys.open("rb") as file:
                if segment.rows and file.read(KEY_BYTES) != segment.first_key:
                    return self._reread()  # a copy of another store's segment, say
                if rows == segment.rows:
                    continue
                file.seek(segment.rows * KEY_BYTES)
                new = file.read((rows - segment.rows) * KEY_BYTES)
            if not segment.rows:
                segment.first_key = new[:KEY_BYTES]
            for i in range(rows - segment.rows):
                key = new[i * KEY_BYTES : (i + 1) * KEY_BYTES]
                index.where.setdefault(key, (number, segment.rows + i))
            segment.rows = rows
            segment.mapped = segment.mapping = None  # mapped again, longer, when next read
        if any(number not in listed for number in index.segments):
            self._reread()

    def _reread(self) -> None:
        """Forget what was read and read every segment again (called with the index lock)."""
        self._index.segments.clear()
        self._index.where.clear()
        self._refresh()

    def __len__(self) -> int:
        with self._index.lock:
            self._refresh()
            return len(self._index.where)

    def locate(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Return each key's (segment, row), -1 where the store does not hold it."""
        with self._index.lock:
            self._refresh()
            where = self._index.where
            found = [where.get(key, (-1, -1)) for key in keys]
        located = np.array(found, dtype=np.int64).reshape(len(keys), 2)
        return located[:, 0], located[:, 1]

    def read(self, keys: Sequence[bytes], dtype: np.dtype | type = np.float32) -> tuple:
        """Return (rows, found): the keys' rows as `dtype` (zeros where missing or not
        finite: a damaged file) and which were found."""
        with self._index.lock:  # where each row is, and its segment mapped, as one state
            self._refresh()
            where = self._index.where
            located = np.array([where.get(key, (-1, -1)) for key in keys], dtype=np.int64)
            segments, rows = located.reshape(len(keys), 2).T
            mapped = {int(n): self._mapped(int(n)) for n in np.unique(segments[segments >= 0])}
        out = np.zeros((len(keys), self.width), dtype=dtype)
        found = segments >= 0
        for number, rows_of in mapped.items():
            chosen = np.flatnonzero(segments == number)
            order = np.argsort(rows[chosen], kind="stable")  # read in file order
            values = rows_of[rows[chosen][order]]
            if len(chosen) >= RELEASED_AFTER_ROWS:
                # A bulk read: the pages it mapped are let go (they stay in the page cache),
                # so the process holds the copy alone, not the copy and the file's pages
                # too (100,000 photos: 0.4 GB more, measured).
                self._index.segments[number].mapping.madvise(mmap.MADV_DONTNEED)
            finite = np.isfinite(values).all(axis=1)
            with np.errstate(over="ignore"):  # float32 rows read as float16 may overflow
                out[chosen[order[finite]]] = values[finite]
            found[chosen[order[~finite]]] = False
        return out, found

    def _mapped(self, number: int) -> np.memmap:
        """Return a segment's rows mapped up to its last key (called with the index lock)."""
        segment = self._index.segments[number]
        if segment.mapped is None or len(segment.mapped) < segment.rows:
            length = segment.rows * self.width * segment.dtype.itemsize
            with segment.row_path(self.folder).open("rb") as file:
                segment.mapping = mmap.mmap(file.fileno(), length, access=mmap.ACCESS_READ)
            segment.mapped = np.frombuffer(
                segment.mapping, dtype=segment.dtype, count=segment.rows * self.width
            ).reshape(segment.rows, self.width)
        return segment.mapped

    def append(self, keys: Sequence[bytes], rows: np.ndarray) -> np.ndarray:
        """Append the rows of keys the store does not hold yet (the first of repeated keys);
        return which of `keys` were written. Rows go to a segment of their dtype."""
        from filelock import FileLock

        dtype = np.dtype(rows.dtype).newbyteorder("<")
        if dtype not in ROW_SUFFIXES.values():
            raise ValueError(f"rows of {rows.dtype} cannot be stored: float16 or float32 only")
        self.folder.mkdir(parents=True, exist_ok=True)
        written = np.zeros(len(keys), dtype=bool)
        with FileLock(self.folder / LOCK_FILE, timeout=LOCK_TIMEOUT_SECONDS), self._index.lock:
            self._refresh()
            seen: set[bytes] = set()
            for i, key in enumerate(keys):
                if key not in self._index.where and key not in seen:
                    written[i] = True
                    seen.add(key)
            todo = np.flatnonzero(written)
            while len(todo):
                segment = self._open_segment(dtype)
                batch = todo[: SEGMENT_ROWS - segment.rows]
                self._write(segment, [keys[i] for i in batch], rows[batch])
                todo = todo[len(batch) :]
        return written

    def _open_segment(self, dtype: np.dtype) -> _Segment:
        """Return the last segment of this dtype with room, its files cut back to its last
        key; or a new one. Called under the write lock."""
        index = self._index
        mine = [s for s in index.segments.values() if s.dtype == dtype]
        last = max(mine, key=lambda s: s.number, default=None)
        if last is None or last.rows >= SEGMENT_ROWS:
            number = max(index.segments, default=0) + 1
            last = index.segments[number] = _Segment(number, dtype)
        row_bytes = self.width * dtype.itemsize
        for path, length in (
            (last.row_path(self.folder), last.rows * row_bytes),
            (last.stem(self.folder).with_suffix(KEY_SUFFIX), last.rows * KEY_BYTES),
        ):
            with path.open("ab") as file:
                if file.tell() != length:  # a writer stopped between its rows and its keys
                    file.truncate(length)
        return last

    def _write(self, segment: _Segment, keys: list[bytes], rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=segment.dtype).tobytes()
        with segment.row_path(self.folder).open("ab") as file:
            file.write(data)
        with segment.stem(self.folder).with_suffix(KEY_SUFFIX).open("ab") as file:
            file.write(b"".join(keys))
        for i, key in enumerate(keys):
            self._index.where[key] = (segment.number, segment.rows + i)
        if not segment.rows:
            segment.first_key = keys[0]
        segment.rows += len(keys)
        segment.mapped = segment.mapping = None

    def keys(self) -> list[bytes]:
        """Return every key the store holds, in the order their rows were written."""
        with self._index.lock:
            self._refresh()
            return sorted(self._index.where, key=self._index.where.__getitem__)

    def bytes_used(self) -> int:
        """Return the bytes the segments take on disk."""
        if not self.folder.is_dir():
            return 0
        return sum(
            entry.stat().st_size
            for entry in os.scandir(self.folder)
            if os.path.splitext(entry.name)[1] in (*ROW_SUFFIXES, KEY_SUFFIX)
        )
