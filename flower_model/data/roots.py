"""The folders the app may read photos from, and the datasets found under them.

A hosted app must not let a visitor make the server read any folder on its disk. The app
therefore reads photos only under its data roots: the folders listed in $FLOWER_LENS_DATA_ROOTS
(or, when that is unset, the data folder it was started on, $FLOWER_LENS_DATA), plus its own:
the kagglehub download folder and the workspace's uploaded datasets. The CLI, run by the
machine's own user, is not confined.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flower_model.core import workspace
from flower_model.core.errors import DatasetError

ROOTS_ENV = "FLOWER_LENS_DATA_ROOTS"
# How far below a root the dataset list looks, and how many folders it visits at most, so that
# a root as wide as a home folder still lists in well under a second.
SEARCH_DEPTH = 6
MAX_FOLDERS_VISITED = 3000


def kagglehub_folder() -> Path:
    """Return where kagglehub stores downloads ($KAGGLEHUB_CACHE or ~/.cache/kagglehub)."""
    from_env = os.environ.get("KAGGLEHUB_CACHE")
    return Path(from_env).expanduser() if from_env else Path.home() / ".cache" / "kagglehub"


def _real(path: Path) -> Path:
    """Return a path with `~`, `..` and every symlink resolved (it need not exist)."""
    try:
        return Path(os.path.realpath(Path(path).expanduser()))
    except (ValueError, OSError) as exc:  # a NUL byte, a name too long, a loop
        raise DatasetError(f"{str(path)[:200]!r} is not a usable folder name ({exc})") from exc


@dataclass(frozen=True)
class DataRoots:
    """The folders, symlinks resolved, under which the app reads photos."""

    shared: tuple[Path, ...]  # what the host shares: $FLOWER_LENS_DATA_ROOTS or $FLOWER_LENS_DATA
    own: tuple[Path, ...]  # the app's own: the kagglehub folder and uploaded datasets
    listed: bool  # whether the host listed the shared roots in $FLOWER_LENS_DATA_ROOTS

    @property
    def folders(self) -> tuple[Path, ...]:
        """Return every root, shared first."""
        return self.shared + self.own

    def allows(self, path: Path) -> bool:
        """Return whether a path, once resolved, is one of the roots or inside one."""
        try:
            real = _real(path)
        except DatasetError:
            return False
        return any(real.is_relative_to(root) for root in self.folders)

    def check(self, path: Path) -> Path:
        """Return a folder resolved, or raise DatasetError if it is outside every root."""
        real = _real(path)
        if not self.allows(real):
            shown = os.pathsep.join(str(root) for root in self.shared) or "(none)"
            raise DatasetError(
                f"{path} is outside the folders this app may read. The server's "
                f"${ROOTS_ENV} is {shown}: whoever runs the server can add the folder there, "
                "or upload the photos on Explore"
            )
        return real

    def datasets(self) -> tuple[Path, ...]:
        """Return the folders under the roots that hold class folders of photos, sorted.

        A folder counts when two or more of its sub-folders hold image files; the search
        stops going deeper there, and skips hidden folders.
        """
        from flower_model.data.dataset import looks_like_class_root

        found: list[Path] = []
        visited = 0
        for root in self.folders:
            level = [root]
            for _ in range(SEARCH_DEPTH + 1):
                deeper: list[Path] = []
                for folder in level:
                    visited += 1
                    if visited > MAX_FOLDERS_VISITED:
                        return tuple(sorted(set(found)))
                    if looks_like_class_root(folder):
                        found.append(_real(folder))
                        continue
                    deeper.extend(_subfolders_inside(folder, root))
                level = deeper
        return tuple(sorted(set(found)))


def _subfolders_inside(folder: Path, root: Path) -> list[Path]:
    """Return a folder's visible sub-folders whose real path stays inside root."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    subfolders = []
    for entry in entries:
        if entry.name.startswith((".", "__")):
            continue
        try:
            if entry.is_dir() and _real(entry).is_relative_to(root):
                subfolders.append(entry)
        except OSError:
            continue
    return subfolders


def data_roots() -> DataRoots:
    """Return this server's data roots, read from the environment."""
    listed = os.environ.get(ROOTS_ENV, "").strip()
    if listed:
        shared = [Path(part) for part in listed.split(os.pathsep) if part.strip()]
    else:
        data = os.environ.get(workspace.DATA_ENV, "").strip()
        shared = [Path(data)] if data else []
    own = [kagglehub_folder(), workspace.datasets_dir()]
    return DataRoots(
        shared=tuple(_real(p) for p in shared),
        own=tuple(_real(p) for p in own),
        listed=bool(listed),
    )
