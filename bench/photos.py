"""The benchmark's photos: generated flower-like JPEGs of a realistic size (data.synthetic),
with their content hashes, in the order they were made."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_model.data.synthetic import PHOTO_SIZE, write_photos


@dataclass(frozen=True)
class PhotoSet:
    """Photos on disk, in the order they were made (classes interleaved), with their hashes."""

    folder: Path
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    hashes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def first(self, count: int) -> PhotoSet:
        """Return the first `count` photos (every class is among them once count ≥ 5)."""
        if count > len(self.paths):
            raise ValueError(f"only {len(self.paths)} photos were made, not {count}")
        return PhotoSet(self.folder, self.paths[:count], self.labels[:count], self.hashes[:count])

    def mean_bytes(self) -> float:
        """Return the mean JPEG file size."""
        return float(np.mean([p.stat().st_size for p in self.paths])) if self.paths else 0.0


def make_photos(
    folder: Path, count: int, seed: int = 0, size: tuple[int, int] = PHOTO_SIZE
) -> PhotoSet:
    """Write `count` distinct JPEGs to `folder/<class>/`, classes in turn; return them."""
    written = write_photos(folder, count, seed=seed, size=size)
    return PhotoSet(
        folder,
        tuple(w.path for w in written),
        tuple(w.label for w in written),
        tuple(hashlib.sha256(w.path.read_bytes()).hexdigest() for w in written),
    )
