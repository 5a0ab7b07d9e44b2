"""Find, scan and split a dataset laid out one sub-folder per class (download.py fetches one)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from flower_model.core.errors import DatasetError, ImageError
from flower_model.data import scans
from flower_model.data.images import IMAGE_SUFFIXES, inspect, read_bytes

# How deep below the given folder the class folders may sit (kagglehub nests them).
MAX_ROOT_DEPTH = 2
# Bump when the scan's record format changes, so old cached scans are not read.
SCAN_VERSION = 3

Progress = Callable[[int, int], None]
# Whether the app may read a (resolved) path.
Allowed = Callable[[Path], bool]


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One usable photo: where it is, its class, and what its content hashes to."""

    path: str  # relative to the class root, with forward slashes
    label: int
    sha256: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True)
class SkippedFile:
    """A file in a class folder that is not used, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    """A scanned dataset: class names in model output order, usable photos, skipped files."""

    root: Path
    class_names: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    skipped: tuple[SkippedFile, ...]
    fingerprint: str
    # A person's decisions applied to the folder (decisions.py): photos left out, and
    # (photo, class) for photos counted under another class than their folder's.
    excluded: tuple[str, ...] = ()
    relabelled: tuple[tuple[str, str], ...] = ()

    def path_of(self, record: ImageRecord) -> Path:
        """Return the absolute path of a record's file."""
        return self.root / record.path

    def counts(self) -> dict[str, int]:
        """Return the number of usable photos per class, in class order."""
        per_label = Counter(record.label for record in self.records)
        return {name: per_label[i] for i, name in enumerate(self.class_names)}


@dataclass(frozen=True)
class Split:
    """A deterministic stratified train/validation split, as relative paths."""

    seed: int
    val_fraction: float
    train: tuple[str, ...]
    val: tuple[str, ...]
    # Duplicates of one picture, each group kept on one side (older runs recorded none).
    groups: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> dict:
        """Return the split as plain JSON values, for a run's metadata."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "train": list(self.train),
            "val": list(self.val),
            "groups": [list(group) for group in self.groups],
        }

    @classmethod
    def from_json(cls, value: dict) -> Split:
        """Rebuild a split stored in a run's metadata."""
        return cls(
            seed=int(value["seed"]),
            val_fraction=float(value["val_fraction"]),
            train=tuple(value["train"]),
            val=tuple(value["val"]),
            groups=tuple(tuple(group) for group in value.get("groups", ())),
        )


def _visible(path: Path | os.DirEntry) -> bool:
    return not path.name.startswith((".", "__"))


def _suffix(name: str) -> str:
    """Return a file name's suffix, lowercased, as `PurePath.suffix` finds it."""
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def _entries(folder: Path) -> list[os.DirEntry]:
    """Return a folder's entries sorted by name (os.scandir: a folder of photos is listed
    with their types, not a system call per photo); raise OSError when it cannot be read."""
    with os.scandir(folder) as listing:
        return sorted(listing, key=lambda entry: entry.name)


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [folder / e.name for e in _entries(folder) if _visible(e) and e.is_dir()]
    except OSError:
        return []


def _image_count(folder: Path) -> int:
    try:
        with os.scandir(folder) as listing:  # a count: no need to sort
            return sum(
                1
                for e in listing
                if _visible(e) and _suffix(e.name) in IMAGE_SUFFIXES and e.is_file()
            )
    except OSError:
        return 0


def _class_image_count(folder: Path) -> int:
    """Return the images in a folder's class folders, or 0 unless two or more have images."""
    counts = [_image_count(sub) for sub in _subdirs(folder)]
    return sum(counts) if sum(1 for c in counts if c) >= 2 else 0


def looks_like_class_root(folder: Path) -> bool:
    """Return whether two or more of a folder's sub-folders hold image files."""
    return _class_image_count(folder) > 0


# What a folder's listing found, kept for the next page run while the folder looks the same:
# listing 100,000 photos and looking at each takes about a second. A listing is used again
# while the folder and its sub-folders keep their modification times (adding, removing or
# renaming a photo changes its folder's), for at most LISTING_TRUST_SECONDS: a photo rewritten
# in place under the same name is seen after that.
LISTING_TRUST_SECONDS = 60.0
LISTINGS_KEPT = 16
RACY_NANOSECONDS = 2_000_000_000
_LISTINGS: dict[tuple, tuple[tuple, float, object]] = {}


def _folder_stamp(folder: Path) -> tuple | None:
    """Return the modification times of a folder and of its sub-folders (a few system calls:
    a folder of classes has a few entries), or None if it cannot be read."""
    try:
        with os.scandir(folder) as listing:
            subs = sorted(
                (e.name, e.stat().st_mtime_ns) for e in listing if _visible(e) and e.is_dir()
            )
        return (folder.stat().st_mtime_ns, tuple(subs))
    except OSError:
        return None


def _remembered(key: tuple, folders: Callable[[object], list[Path]], compute: Callable):
    """Return `compute()`, or what it returned for `key` before if the folders it depends on
    (`folders(value)`) look the same and it is recent."""
    now = time.monotonic()
    with _SCANNED_LOCK:
        kept = _LISTINGS.get(key)
    if kept is not None:
        stamps, when, value = kept
        if now - when < LISTING_TRUST_SECONDS and stamps == tuple(
            _folder_stamp(f) for f in folders(value)
        ):
            return value
    value = compute()
    stamps = tuple(_folder_stamp(f) for f in folders(value))
    # A folder changed within the clock's coarse tick of the listing could change again
    # unseen under the same time ("racy git"): such a listing is not kept.
    times = [t for stamp in stamps if stamp for t in (stamp[0], *(m for _, m in stamp[1]))]
    if None in stamps or max(times, default=0) > time.time_ns() - RACY_NANOSECONDS:
        return value
    with _SCANNED_LOCK:
        _LISTINGS[key] = (stamps, now, value)
        while len(_LISTINGS) > LISTINGS_KEPT:
            _LISTINGS.pop(next(iter(_LISTINGS)))
    return value


def find_class_root(path: Path) -> Path:
    """Return the folder whose sub-folders are the classes, searching up to two levels down."""
    path = Path(path).expanduser()
    try:
        folder = path.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte: said in one line below
        folder = False
    if folder:
        return _remembered(
            ("root", str(path)), lambda found: [path, found], lambda: _find_class_root(path)
        )
    return _find_class_root(path)


def _find_class_root(path: Path) -> Path:
    try:
        path.stat()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop, no permission
        raise DatasetError(f"{str(path)[:200]} cannot be opened ({exc})") from exc
    if not path.exists():
        raise DatasetError(f"{path} does not exist: give a folder with one sub-folder per class")
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder: give a folder with one sub-folder per class")
    level = [path]
    for _ in range(MAX_ROOT_DEPTH + 1):
        found = [(count, folder) for folder in level if (count := _class_image_count(folder))]
        if found:
            # Several candidates at one depth (say train/ and test/): take the largest.
            return max(found, key=lambda pair: pair[0])[1]
        level = [sub for folder in level for sub in _subdirs(folder)]
    raise DatasetError(
        f"no class folders with images found in {path} (looked {MAX_ROOT_DEPTH} levels down): "
        "lay it out as <folder>/<class name>/<photo>.jpg with at least two classes"
    )


def _unreadable(
    entry: Path, allowed: Allowed | None, listed: os.DirEntry | None = None
) -> str | None:
    """Return why a file or folder of a dataset cannot be read, or None if it can. `listed`
    is its entry in its folder's listing, when there is one: it knows the file's type."""
    try:
        if listed.is_symlink() if listed is not None else entry.is_symlink():
            target = entry.resolve(strict=True)
            if allowed is not None and not allowed(target):
                return "a link to outside the folders this app may read (not followed)"
        listed.stat() if listed is not None else entry.stat()
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        return "a symlink loop"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if entry.is_symlink():
            return "a broken link (its target does not exist)"
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _listing(
    root: Path, allowed: Allowed | None
) -> tuple[list[tuple[str, str, os.stat_result]], list[SkippedFile]]:
    """Return (class name, path under the root, stat) for each candidate image, and the files
    passed over. Strings, not Paths: 100,000 photos' Paths took 2 s (measured)."""
    candidates: list[tuple[str, str, os.stat_result]] = []
    skipped: list[SkippedFile] = []
    for class_dir in _subdirs(root):
        if (reason := _unreadable(class_dir, allowed)) is not None:
            skipped.append(SkippedFile(class_dir.relative_to(root).as_posix(), reason))
            continue
        try:
            entries = _entries(class_dir)
        except OSError as exc:
            rel = class_dir.relative_to(root).as_posix()
            skipped.append(SkippedFile(rel, f"folder cannot be read ({exc.strerror or exc})"))
            continue
        name = class_dir.name
        for entry in entries:
            rel = f"{name}/{entry.name}"
            if not _visible(entry):
                skipped.append(SkippedFile(rel, "hidden file"))
                continue
            if entry.is_symlink():
                reason = _unreadable(class_dir / entry.name, allowed, entry)
                if reason is not None:
                    skipped.append(SkippedFile(rel, reason))
                    continue
            if entry.is_dir():
                skipped.append(SkippedFile(rel, "folder inside a class folder (not read)"))
            elif (suffix := _suffix(entry.name)) not in IMAGE_SUFFIXES:
                kind = suffix or "no extension"
                skipped.append(SkippedFile(rel, f"not an image file type ({kind})"))
            else:
                try:
                    candidates.append((name, rel, entry.stat()))
                except OSError:
                    why = _unreadable(class_dir / entry.name, allowed, entry)
                    skipped.append(SkippedFile(rel, why or "cannot be read"))
    return candidates, skipped


def _listing_key(
    root: Path, candidates: list[tuple[str, str, os.stat_result]], skipped: list
) -> str:
    """Return a cheap key of a folder's state: names, sizes and modification times."""
    digest = hashlib.sha256(f"v{SCAN_VERSION}:{root.resolve()}".encode())
    for _, rel, stat in candidates:
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for item in skipped:
        digest.update(f"{item.path}\0{item.reason}\n".encode())
    return digest.hexdigest()


def _stamp(rel: str, stat: os.stat_result) -> scans.FileStamp:
    return (rel, stat.st_size, stat.st_mtime_ns)


def _inspect_file(root: Path, class_name: str, rel: str) -> scans.Finding:
    try:
        data = read_bytes(root / rel)
        info = inspect(data, rel.rsplit("/", 1)[-1])
    except ImageError as exc:
        reason = str(exc).split(": ", 1)[-1]
        return None, reason
    digest = hashlib.sha256(data).hexdigest()
    return scans.Found(class_name, digest, info.width, info.height, len(data)), None


def content_fingerprint(class_names: tuple[str, ...], records: tuple[ImageRecord, ...]) -> str:
    """Return a short id of a dataset's photos: their paths, classes and contents."""
    digest = hashlib.sha256("\n".join(class_names).encode())
    for record in sorted(records, key=lambda r: r.path):
        digest.update(f"{record.path}\0{record.label}\0{record.sha256}\n".encode())
    return digest.hexdigest()[:16]


# The latest scans of this process, by their stored scan: a page that runs again (every click
# in the app) lists the folder and finds its dataset here. 4,317 photos: 0.05 s a page run.
SCANS_KEPT_IN_MEMORY = 8
_SCANNED: dict[str, Dataset] = {}
_SCANNED_LOCK = threading.Lock()


def scan_dataset(
    path: Path,
    progress: Progress | None = None,
    use_cache: bool = True,
    allowed: Allowed | None = None,
) -> Dataset:
    """Return the dataset under a folder: every photo decoded once to find the unusable ones.

    Links whose target `allowed` refuses are skipped, with the reason (the app passes its data
    roots' check; the CLI reads whatever its user can).
    """
    root = find_class_root(Path(path))

    def listed() -> tuple[list, list, str]:
        candidates, skipped = _listing(root, allowed)
        return candidates, skipped, _listing_key(root, candidates, skipped)

    if use_cache:
        who = (getattr(allowed, "__self__", None), getattr(allowed, "__func__", allowed))
        remembered = _remembered(("listing", str(root), who), lambda _: [root], listed)
        candidates, skipped, key = remembered
    else:
        candidates, skipped, key = listed()
    if use_cache and (known := _SCANNED.get(key)) is not None:
        return known  # the folder as this process scanned it: not a file changed since
    store = scans.store_of(root)
    known = scans.read(store) if use_cache else scans.Known({}, (), 0)
    before = known.findings
    stamps = [_stamp(c[1], c[2]) for c in candidates]
    todo = [i for i, stamp in enumerate(stamps) if stamp not in before]
    # Pillow releases the GIL while decoding, so threads use every core.
    inspected: dict[int, scans.Finding] = {}
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        work = pool.map(lambda i: _inspect_file(root, candidates[i][0], candidates[i][1]), todo)
        for done, (i, row) in enumerate(zip(todo, work, strict=True), start=1):
            inspected[i] = row
            if progress is not None and (done % 50 == 0 or done == len(todo)):
                progress(done, len(todo))
    rows = [inspected[i] if i in inspected else before[stamp] for i, stamp in enumerate(stamps)]
    scans.write(store, known, dict(zip(stamps, rows, strict=True)), (stamps[i] for i in todo))
    found = [(stamp[0], row) for stamp, (row, _) in zip(stamps, rows, strict=True) if row]
    class_names = tuple(sorted({row.class_name for _, row in found}))
    if len(class_names) < 2:
        raise DatasetError(
            f"{root} has usable photos in {len(class_names)} class folder(s); at least two are "
            "needed to train a classifier"
        )
    label_of = {name: i for i, name in enumerate(class_names)}
    records = tuple(
        ImageRecord(
            path, label_of[row.class_name], row.sha256, row.width, row.height, row.size_bytes
        )
        for path, row in found
    )
    bad = [
        SkippedFile(candidate[1], reason)
        for candidate, (row, reason) in zip(candidates, rows, strict=True)
        if row is None
    ]
    dataset = Dataset(
        root=root,
        class_names=class_names,
        records=records,
        skipped=tuple(skipped + bad),
        fingerprint=content_fingerprint(class_names, records),
    )
    with _SCANNED_LOCK:
        _SCANNED[key] = dataset
        while len(_SCANNED) > SCANS_KEPT_IN_MEMORY:
            _SCANNED.pop(next(iter(_SCANNED)))
    return dataset


def _split_order(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def split_dataset(
    dataset: Dataset,
    val_fraction: float = 0.2,
    seed: int = 42,
    groups: Sequence[Sequence[str]] = (),
) -> Split:
    """Return a stratified split: the same seed and files give the same split on any machine.

    The photos of each group (duplicates of one picture; overlapping groups are merged) land
    on the same side, so that no picture is both trained on and measured on. A group counts
    for the class most of its photos are filed under, and goes to validation only while it
    fits in that class's share. Without groups, every photo is a group of its own.
    """
    from flower_model.data.groups import connected

    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"the validation share must be between 0 and 1, not {val_fraction}")
    label_of = {r.path: r.label for r in dataset.records}
    paths = sorted(label_of)
    index = {path: i for i, path in enumerate(paths)}
    linked: list[list[int]] = [[] for _ in paths]
    for group in groups:
        members = [index[p] for p in group if p in index]
        if members:
            linked[members[0]].extend(members[1:])
    units = {paths[m[0]]: [paths[i] for i in m] for m in connected(len(paths), linked)}
    grouped = {p for members in units.values() for p in members}
    units.update((p, [p]) for p in paths if p not in grouped)

    def unit_class(members: list[str]) -> int:
        counts = Counter(label_of[p] for p in members)
        return min(counts, key=lambda label: (-counts[label], label))

    by_class: dict[int, list[str]] = {}
    for key, members in units.items():
        by_class.setdefault(unit_class(members), []).append(key)
    train: list[str] = []
    val: list[str] = []
    for label, name in enumerate(dataset.class_names):
        ordered = sorted(by_class.get(label, []), key=lambda k: _split_order(seed, k))
        photos = sum(len(units[key]) for key in ordered)
        if photos < 2 and sum(1 for r in dataset.records if r.label == label) >= 2:
            raise _one_sided(name)
        if photos < 2:
            raise DatasetError(
                f"class '{name}' has {photos} usable photo(s); each class needs at least two "
                "so that one can be held out for validation"
            )
        n_val = min(photos - 1, max(1, round(photos * val_fraction)))
        held: list[str] = []
        held_photos = 0
        for key in ordered:
            if held_photos + len(units[key]) <= n_val:
                held.append(key)
                held_photos += len(units[key])
        if not held:  # every group is larger than the share: hold out the smallest
            if len(ordered) == 1:
                raise DatasetError(
                    f"class '{name}' is one picture and its duplicates ({photos} photos): it "
                    "cannot be both trained on and held out; add other photos of it"
                )
            held.append(min(ordered, key=lambda k: (len(units[k]), _split_order(seed, k))))
        held_out = set(held)
        for key in ordered:
            (val if key in held_out else train).extend(units[key])
    _check_sides(dataset, set(train), set(val))
    return Split(
        seed=seed,
        val_fraction=val_fraction,
        train=tuple(sorted(train)),
        val=tuple(sorted(val)),
        groups=tuple(sorted(tuple(members) for members in units.values() if len(members) > 1)),
    )


def _check_sides(dataset: Dataset, train: set[str], val: set[str]) -> None:
    """Raise DatasetError unless every class has photos on both sides of a split."""
    for label, name in enumerate(dataset.class_names):
        mine = [r.path for r in dataset.records if r.label == label]
        if not any(p in train for p in mine) or not any(p in val for p in mine):
            raise _one_sided(name)


def _one_sided(name: str) -> DatasetError:
    return DatasetError(
        f"class '{name}' cannot have photos both in training and held out: its photos are "
        "duplicates of photos filed under other classes; leave some of them out (Explore › "
        "Data issues, or 'audit --apply duplicate')"
    )


def records_for(dataset: Dataset, paths: tuple[str, ...]) -> tuple[ImageRecord, ...]:
    """Return the dataset's records for relative paths, refusing paths it does not hold."""
    by_path = {record.path: record for record in dataset.records}
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise DatasetError(
            f"{len(missing)} photo(s) of the stored split are no longer in {dataset.root} "
            f"(first: {missing[0]}); evaluate on the dataset the run was trained on"
        )
    return tuple(by_path[p] for p in paths)


def dataset_summary(dataset: Dataset) -> dict:
    """Return the dataset report as plain JSON values: counts, image sizes, skipped files."""
    widths = [r.width for r in dataset.records]
    heights = [r.height for r in dataset.records]
    return {
        "root": str(dataset.root),
        "fingerprint": dataset.fingerprint,
        "classes": dataset.counts(),
        "images": len(dataset.records),
        "width": {"min": min(widths), "max": max(widths)},
        "height": {"min": min(heights), "max": max(heights)},
        "sizes": Counter(f"{r.width}x{r.height}" for r in dataset.records).most_common(5),
        "skipped": [asdict(item) for item in dataset.skipped],
    }
