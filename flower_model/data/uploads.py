"""Datasets that visitors bring through the browser, kept in the workspace.

Each dataset is a folder `datasets/<id>/<class>/<hash><suffix>` of the original bytes, named
by content so that the same photo is stored once and no visitor-given name ever becomes a
path. Photos come one class at a time, or as a `.zip` of class folders; what cannot be used is
listed with the reason. Limits on size and file count, per dataset, per visitor and in all,
keep one visitor from filling the disk; uploads untouched for the host's number of days expire.
Each dataset is its uploader's (owners.py): private, shared by link, changed and deleted by them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from flower_model.core import workspace
from flower_model.core.errors import DatasetError, ImageError
from flower_model.data import owners
from flower_model.data.dataset import SkippedFile
from flower_model.data.images import IMAGE_SUFFIXES, MAX_FILE_BYTES, inspect

# The host's limits on uploads (docs/hosting.md), each an environment variable; these are
# the defaults. Per dataset, so that the workspace's disk is shared fairly:
MAX_DATASET_BYTES = 500 * 2**20
MAX_DATASET_FILES = 5000
# All uploaded datasets together, so that many datasets cannot fill the disk either.
MAX_ALL_UPLOADS_BYTES = 4 * 2**30
# Per visitor (an account, or a browser session), so that one cannot deny uploads to all.
MAX_OWNER_BYTES = 1024 * 2**20
MAX_OWNER_DATASETS = 10
# An upload nobody opened or added to for this many days is deleted.
UPLOAD_DAYS = 30
PHOTOS_ENV = "FLOWER_LENS_UPLOAD_PHOTOS"  # photos per dataset
DATASET_MB_ENV = "FLOWER_LENS_UPLOAD_DATASET_MB"  # megabytes per dataset
TOTAL_GB_ENV = "FLOWER_LENS_UPLOAD_TOTAL_GB"  # gigabytes of every uploaded dataset together
OWNER_MB_ENV = "FLOWER_LENS_UPLOAD_OWNER_MB"  # megabytes of one visitor's datasets together
OWNER_DATASETS_ENV = "FLOWER_LENS_UPLOAD_OWNER_DATASETS"  # datasets one visitor may keep
DAYS_ENV = "FLOWER_LENS_UPLOAD_DAYS"  # days an untouched upload is kept
# A zip member that inflates more than this is refused as a zip bomb (photos barely compress:
# a JPEG's ratio is about 1, a PNG's rarely above 10).
MAX_COMPRESSION_RATIO = 100
# Class and dataset names: letters, digits, spaces, dots, dashes and underscores.
_NAME = re.compile(r"^[\w][\w .-]{0,63}$")
# Pillow's format name → the suffix a stored photo gets.
_SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}

Photo = tuple[str, bytes]  # (the name it was given, its bytes)


@dataclass(frozen=True)
class UploadReport:
    """What one upload did: photos added per class, and the files refused."""

    dataset: Path
    added: dict[str, int] = field(default_factory=dict)
    refused: tuple[SkippedFile, ...] = ()  # each file not added (its name in the upload), and why

    @property
    def total_added(self) -> int:
        """Return how many photos were added."""
        return sum(self.added.values())


@dataclass(frozen=True)
class UploadLimits:
    """How much the visitors may upload: photos and bytes per dataset, bytes and datasets per
    visitor, bytes in all; and for how many days an untouched upload is kept."""

    photos: int
    dataset_bytes: int
    all_bytes: int
    owner_bytes: int = MAX_OWNER_BYTES
    owner_datasets: int = MAX_OWNER_DATASETS
    days: float = UPLOAD_DAYS


def _setting(name: str, default: int, unit: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise DatasetError(f"${name} must be a number above 0, not '{text[:40]}'")
    return int(value * unit)


def upload_limits() -> UploadLimits:
    """Return the host's upload limits: its settings, or the defaults; raise DatasetError
    naming a setting that is not a number above 0."""
    return UploadLimits(
        photos=_setting(PHOTOS_ENV, MAX_DATASET_FILES, 1),
        dataset_bytes=_setting(DATASET_MB_ENV, MAX_DATASET_BYTES, 2**20),
        all_bytes=_setting(TOTAL_GB_ENV, MAX_ALL_UPLOADS_BYTES, 2**30),
        owner_bytes=_setting(OWNER_MB_ENV, MAX_OWNER_BYTES, 2**20),
        owner_datasets=_setting(OWNER_DATASETS_ENV, MAX_OWNER_DATASETS, 1),
        days=_setting(DAYS_ENV, UPLOAD_DAYS, 1),
    )


def check_name(name: str, what: str) -> str:
    """Return a class or dataset name stripped, or raise DatasetError saying what is allowed."""
    name = name.strip()
    if not _NAME.match(name):
        raise DatasetError(
            f"'{name}' cannot be a {what} name: use up to 64 letters, digits, spaces, dots, "
            "dashes or underscores, starting with a letter or digit"
        )
    return name


def uploaded_datasets() -> tuple[Path, ...]:
    """Return the folders of the uploaded datasets, oldest first."""
    folder = workspace.datasets_dir()
    if not folder.is_dir():
        return ()
    found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return tuple(sorted(found, key=lambda p: p.stat().st_mtime))


def create_dataset(name: str, owner: str = "") -> Path:
    """Return the folder of a new, empty uploaded dataset named after `name`, owned by
    `owner` ("": the host's, open to all); refuse a visitor's dataset beyond their limit.
    Uploads untouched for the host's number of days are deleted first."""
    slug = re.sub(r"[^\w-]+", "-", check_name(name, "dataset")).strip("-").lower()
    limits = upload_limits()
    expire_uploads(limits.days)
    if owner:
        kept = owners.owned_by(owner, uploaded_datasets())
        if len(kept) >= limits.owner_datasets:
            raise DatasetError(
                f"you already keep {len(kept)} uploaded datasets, this server's limit per "
                "visitor: delete one of them to upload another"
            )
    folder = workspace.datasets_dir() / f"{slug}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    if owner:
        owners.claim(folder, owner)
    return folder


def create_dataset_with(
    name: str, fill: Callable[[Path], UploadReport], owner: str = ""
) -> UploadReport:
    """Return what `fill` added to a new dataset named after `name` (owned by `owner`); if it
    fails or adds nothing, no empty dataset is left behind."""
    folder = create_dataset(name, owner)
    try:
        report = fill(folder)
    except BaseException:
        delete_dataset(folder)
        raise
    if not report.total_added:
        delete_dataset(folder)
    return report


def uploaded_dataset(folder: Path) -> Path:
    """Return an uploaded dataset's folder, refusing anything that is not one."""
    folder = Path(folder)
    home = workspace.datasets_dir().resolve()
    if folder.resolve().parent != home or not folder.is_dir():
        raise DatasetError(f"{folder} is not an uploaded dataset")
    return folder


def delete_dataset(folder: Path, owner: str | None = None) -> None:
    """Delete an uploaded dataset, every photo in it and the decisions about it; with an
    `owner` (a visitor), only if it is theirs (None: the host, who may delete any)."""
    from flower_model.data.decisions import forget_under

    folder = uploaded_dataset(folder)
    owners.check_owner(folder, owner)
    shutil.rmtree(folder)
    forget_under(folder)
    owners.forget(folder)


def last_used(folder: Path) -> float:
    """Return when an uploaded dataset was last opened or added to (a time.time())."""
    stamps = [folder.stat().st_mtime]
    stamps += [p.stat().st_mtime for p in folder.iterdir() if p.is_dir()]
    record = owners.ownership_file(folder)
    if record.exists():
        stamps.append(record.stat().st_mtime)
    return max(stamps)


def expire_uploads(days: float | None = None, now: float | None = None) -> list[Path]:
    """Delete the uploaded datasets nobody opened or added to for `days` (the host's setting
    by default); return them."""
    days = upload_limits().days if days is None else days
    cutoff = (time.time() if now is None else now) - days * 86400
    gone = []
    for folder in uploaded_datasets():
        try:
            if last_used(folder) < cutoff:
                delete_dataset(folder)
                gone.append(folder)
        except OSError:  # deleted meanwhile by another process
            continue
    return gone


def _usage(folder: Path) -> tuple[int, int]:
    """Return (bytes, files) a dataset holds."""
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()]
    return sum(sizes), len(sizes)


def add_photos(
    folder: Path, class_name: str, photos: Iterable[Photo], owner: str | None = None
) -> UploadReport:
    """Add photos to one class of an uploaded dataset (`owner`'s, when a visitor adds);
    return what was added and refused."""
    folder = uploaded_dataset(folder)
    owners.check_owner(folder, owner)
    class_name = check_name(class_name, "class")
    return _store(folder, ((class_name, name, data) for name, data in photos))


def add_zip(
    folder: Path, data: bytes, zip_name: str = "upload.zip", owner: str | None = None
) -> UploadReport:
    """Add the photos of a `.zip` laid out `<class>/<photo>` (at any depth: a photo's class is
    the folder it sits in) to an uploaded dataset; return what was added and refused.

    Members with absolute or `..` paths, links, and members that inflate like zip bombs are
    refused; the zip as a whole is refused if it would inflate beyond the dataset's limit.
    """
    folder = uploaded_dataset(folder)
    owners.check_owner(folder, owner)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except Exception as exc:  # a damaged archive can raise almost anything
        raise DatasetError(f"{zip_name}: not a zip file that can be read ({exc})") from exc
    declared = sum(m.file_size for m in members)
    limit = upload_limits().dataset_bytes
    if declared > limit:
        raise DatasetError(
            f"{zip_name}: it would inflate to {declared / 2**20:,.0f} MB, over the "
            f"{limit / 2**20:,.0f} MB limit of a dataset"
        )
    refused: list[SkippedFile] = []
    wanted: list[tuple[str, zipfile.ZipInfo]] = []
    for member in members:
        if member.is_dir():
            continue
        reason, class_name = _member_problem(member)
        if reason is not None:
            refused.append(SkippedFile(member.filename, reason))
        else:
            wanted.append((class_name, member))

    def photos() -> Iterable[tuple[str, str, bytes]]:
        for class_name, member in wanted:
            with archive.open(member) as stream:
                # Never trust the declared size: read one byte past the limit at most.
                content = stream.read(MAX_FILE_BYTES + 1)
            yield class_name, member.filename, content

    try:
        report = _store(folder, photos())
    except DatasetError:
        raise
    except Exception as exc:  # zlib, encryption, unknown methods: each its own exception type
        raise DatasetError(f"{zip_name}: the zip cannot be read ({exc})") from exc
    return UploadReport(report.dataset, report.added, tuple(refused) + report.refused)


def _member_problem(member: zipfile.ZipInfo) -> tuple[str | None, str]:
    """Return (why a zip member is refused, or None; the class it belongs to)."""
    path = PurePosixPath(member.filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", member.filename):
        return "an absolute or '..' path (refused)", ""
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link (refused)", ""
    if any(part.startswith((".", "__")) for part in path.parts):
        return "a hidden or system file (skipped)", ""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({path.suffix.lower() or 'no extension'})", ""
    if len(path.parts) < 2:
        return "not inside a class folder (put photos in <class>/<photo>)", ""
    if member.file_size > MAX_FILE_BYTES:
        return f"over the {MAX_FILE_BYTES // 2**20} MB limit of a photo", ""
    if member.compress_size and member.file_size / member.compress_size > MAX_COMPRESSION_RATIO:
        return "inflates like a zip bomb (refused)", ""
    try:
        return None, check_name(path.parent.name, "class")
    except DatasetError as exc:
        return str(exc), ""


def _store(folder: Path, photos: Iterable[tuple[str, str, bytes]]) -> UploadReport:
    """Write photos into their class folders under content-hashed names, within the limits."""
    limits = upload_limits()
    used_bytes, used_files = _usage(folder)
    all_bytes = _usage(workspace.datasets_dir())[0]
    owner = owners.ownership_of(folder).owner
    theirs = owners.owned_by(owner, uploaded_datasets()) if owner else []
    owner_bytes = sum(_usage(f)[0] for f in theirs)
    added: Counter[str] = Counter()
    refused: list[SkippedFile] = []
    for class_name, name, data in photos:
        reason = None
        if len(data) > MAX_FILE_BYTES:
            reason = f"over the {MAX_FILE_BYTES // 2**20} MB limit of a photo"
        elif used_files + 1 > limits.photos:
            reason = f"the dataset already holds its limit of {limits.photos:,} photos"
        elif used_bytes + len(data) > limits.dataset_bytes:
            reason = f"the dataset would exceed its limit of {limits.dataset_bytes / 2**20:,.0f} MB"
        elif owner and owner_bytes + len(data) > limits.owner_bytes:
            reason = (
                f"your uploaded datasets would exceed this server's limit of "
                f"{limits.owner_bytes / 2**20:,.0f} MB per visitor"
            )
        elif all_bytes + len(data) > limits.all_bytes:
            reason = (
                f"the server's uploaded datasets would exceed their limit of "
                f"{limits.all_bytes / 2**30:,.1f} GB together"
            )
        if reason is not None:
            refused.append(SkippedFile(name, reason))
            continue
        try:
            image_format = inspect(data, PurePosixPath(name).name).format
        except ImageError as exc:
            refused.append(SkippedFile(name, str(exc).split(": ", 1)[-1]))
            continue
        suffix = _SUFFIX_OF_FORMAT.get(image_format or "", PurePosixPath(name).suffix.lower())
        target = folder / class_name / f"{hashlib.sha256(data).hexdigest()[:20]}{suffix}"
        if target.exists():
            refused.append(SkippedFile(name, "already in this class (the same bytes)"))
            continue
        try:
            workspace.write_atomic(target, data)
        except OSError as exc:
            reason = workspace.describe_failure(exc)
            raise DatasetError(f"could not store {name}: {reason}") from exc
        added[class_name] += 1
        used_bytes, used_files = used_bytes + len(data), used_files + 1
        all_bytes += len(data)
        owner_bytes += len(data)
    return UploadReport(folder, dict(sorted(added.items())), tuple(refused))
