"""Generated flower-like JPEG photos of a realistic size, laid out one folder per class."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("daisy", "dandelion", "rose", "sunflower", "tulip")
# Most photos of Kaggle's "Flowers Recognition" are about 320×240.
PHOTO_SIZE = (320, 240)
# Rough colours per class, so the photos differ by class the way flowers do.
COLOURS = {
    "daisy": (235, 235, 225),
    "dandelion": (240, 210, 30),
    "rose": (200, 30, 50),
    "sunflower": (250, 160, 20),
    "tulip": (230, 90, 160),
}


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


def photo(
    rng: np.random.Generator, colour: tuple[int, int, int], size: tuple[int, int]
) -> Image.Image:
    """Return a photo-like image: a smooth random background, a flower-coloured blob, grain."""
    width, height = size
    # Smooth colour variation compresses like a real photo; pure noise would not.
    coarse = rng.uniform(20, 200, (6, 8, 3)).astype(np.uint8)
    background = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    image = np.asarray(background, dtype=np.float32).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    radius = rng.uniform(0.15, 0.35) * min(width, height)
    angle = np.arctan2(yy - cy, xx - cx)
    petals = radius * (0.75 + 0.25 * np.cos(rng.integers(5, 9) * angle))
    image[np.hypot(xx - cx, yy - cy) < petals] = colour
    image += rng.normal(0.0, 6.0, image.shape).astype(np.float32)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_photos(
    folder: Path, count: int, seed: int = 0, size: tuple[int, int] = PHOTO_SIZE
) -> PhotoSet:
    """Write `count` distinct JPEGs to `folder/<class>/`, classes in turn; return them."""
    rng = np.random.default_rng(seed)
    paths, labels, hashes = [], [], []
    for i in range(count):
        label = i % len(CLASSES)
        name = CLASSES[label]
        path = folder / name / f"{name}_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(rng, COLOURS[name], size).save(path, quality=85)
        paths.append(path)
        labels.append(label)
        hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return PhotoSet(folder, tuple(paths), tuple(labels), tuple(hashes))
