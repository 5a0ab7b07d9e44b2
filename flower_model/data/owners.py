"""Who owns each uploaded dataset, and who may open it.

An uploaded dataset is its owner's (an account where the host set up sign-in, else a browser
session): private by default, opened by others only through a share link that carries the
dataset's secret token, deleted by its owner alone (or the host, from the command line).
Ownership is kept beside the datasets, in `datasets/.owners/<dataset>.json`; a dataset without
one (uploaded before ownership existed, or placed there by the host) is the host's, open to all.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

from flower_model.core import workspace
from flower_model.core.errors import DatasetError

OWNERS_FOLDER = ".owners"  # hidden: never taken for a dataset or a class


@dataclass(frozen=True)
class Ownership:
    """Who owns an uploaded dataset, and the secret its share link carries."""

    owner: str  # "": the host's, open to every visitor
    token: str  # "": no share link (the host's)
    created: float

    def to_json(self) -> dict:
        """Return the ownership as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> Ownership:
        """Rebuild an ownership read from its file."""
        return cls(str(value["owner"]), str(value["token"]), float(value["created"]))


HOSTS = Ownership("", "", 0.0)


def ownership_file(folder: Path) -> Path:
    """Return the file naming an uploaded dataset's owner."""
    return workspace.datasets_dir() / OWNERS_FOLDER / f"{Path(folder).name}.json"


def is_upload(folder: Path) -> bool:
    """Return whether a folder is an uploaded dataset (or inside one)."""
    uploads = workspace.datasets_dir().resolve()
    try:
        return Path(folder).resolve().is_relative_to(uploads)
    except (OSError, ValueError):
        return False


def upload_of(folder: Path) -> Path:
    """Return the uploaded dataset a folder is (or lies in)."""
    uploads = workspace.datasets_dir().resolve()
    relative = Path(folder).resolve().relative_to(uploads)
    return uploads / relative.parts[0]


def claim(folder: Path, owner: str) -> Ownership:
    """Make `owner` the owner of a new uploaded dataset, with a fresh share token."""
    ownership = Ownership(owner, secrets.token_urlsafe(18), time.time())
    workspace.write_atomic(ownership_file(folder), json.dumps(ownership.to_json()))
    return ownership


def ownership_of(folder: Path) -> Ownership:
    """Return who owns an uploaded dataset (the host, when no one is recorded)."""
    try:
        return Ownership.from_json(json.loads(ownership_file(upload_of(folder)).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return HOSTS


def may_open(folder: Path, visitor: str, tokens: Collection[str] = ()) -> bool:
    """Return whether a visitor may open a dataset folder: any folder that is not an upload;
    an upload of the host's or their own, or one whose share token they were given."""
    if not is_upload(folder) or Path(folder).resolve() == workspace.datasets_dir().resolve():
        return True
    ownership = ownership_of(folder)
    return ownership.owner in ("", visitor) or ownership.token in tokens


def check_may_open(folder: Path, visitor: str, tokens: Collection[str] = ()) -> Path:
    """Return the folder if the visitor may open it; raise DatasetError saying why not."""
    if not may_open(folder, visitor, tokens):
        raise DatasetError(
            f"{Path(folder).name} is another visitor's uploaded dataset: it opens only with "
            "the share link its owner gives you"
        )
    return folder


def check_owner(folder: Path, owner: str | None) -> None:
    """Raise DatasetError unless `owner` owns the uploaded dataset (None: the host, who owns
    them all)."""
    if owner is None:
        return
    found = ownership_of(folder).owner
    if found != owner:
        raise DatasetError(
            f"only the visitor who uploaded {Path(folder).name} may change or delete it"
        )


def owned_by(owner: str, folders: Collection[Path]) -> list[Path]:
    """Return the uploaded datasets among `folders` that `owner` owns."""
    return [folder for folder in folders if ownership_of(folder).owner == owner]


# An opened upload's record is touched at most this often (its time is what expiry reads).
TOUCH_SECONDS = 3600


def touch(folder: Path) -> None:
    """Note that an uploaded dataset was opened now (at most once an hour), so that it does
    not expire; a record that cannot be written changes nothing else."""
    record = ownership_file(upload_of(folder))
    with contextlib.suppress(OSError):
        if time.time() - record.stat().st_mtime > TOUCH_SECONDS:
            os.utime(record)


def forget(folder: Path) -> None:
    """Forget a deleted dataset's owner."""
    ownership_file(folder).unlink(missing_ok=True)
