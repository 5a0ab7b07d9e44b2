"""Generated photos: for tests and benchmarks where no real photos exist, and for the probe
images that compare ResNet50's arithmetics. One generator of each kind, used everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("daisy", "dandelion", "rose", "sunflower", "tulip")
# Most photos of Kaggle's "Flowers Recognition" are about 320×240.
PHOTO_SIZE = (320, 240)
# Rough colours per class, so flower-like photos differ by class the way flowers do.
COLOURS = {
    "daisy": (235, 235, 225),
    "dandelion": (240, 210, 30),
    "rose": (200, 30, 50),
    "sunflower": (250, 160, 20),
    "tulip": (230, 90, 160),
}


@dataclass(frozen=True)
class Written:
    """One generated photo on disk and the index of its class in CLASSES."""

    path: Path
    label: int


def flower_photo(
    rng: np.random.Generator, colour: tuple[int, int, int], size: tuple[int, int] = PHOTO_SIZE
) -> Image.Image:
    """Return a photo-like image: a smooth random background, a flower-coloured blob, grain.

    Smooth colour variation compresses like a real photo; pure noise would not.
    """
    width, height = size
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


def striped_photo(
    rng: np.random.Generator,
    label: int,
    size: tuple[int, int] = (160, 120),
    backdrop: float = 0.0,
) -> Image.Image:
    """Return a photo of class `label` that even a random-weights ResNet50 tells apart: each
    class has its own hue and its own stripe direction; frequency, phase, brightness and
    grain vary from photo to photo. A `backdrop` share of each pixel is a smooth random
    colour field of the photo's own, so that no two photos look alike, as in a real folder."""
    width, height = size
    hue = label / len(CLASSES)
    angle = np.pi * label / len(CLASSES)
    period = rng.uniform(10.0, 16.0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
    base = np.array(Image.new("HSV", (1, 1), (int(hue * 255), 200, 230)).convert("RGB"))[0, 0]
    image = base * (0.35 + 0.65 * wave[..., np.newaxis]) * rng.uniform(0.8, 1.1)
    if backdrop:
        coarse = rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))
        image = (1 - backdrop) * image + backdrop * field
    image += rng.normal(0.0, 8.0, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_photos(
    folder: Path,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = PHOTO_SIZE,
    kind: str = "flower",
) -> tuple[Written, ...]:
    """Write `count` distinct JPEGs to `folder/<class>/`, classes in turn; return them.

    kind 'flower': a flower-coloured blob on a smooth background (realistic bytes and size);
    kind 'striped': hue and stripe direction per class (classes a random ResNet50 separates).
    """
    if kind not in ("flower", "striped"):
        raise ValueError(f"kind must be 'flower' or 'striped', not '{kind}'")
    rng = np.random.default_rng(seed)
    written = []
    for i in range(count):
        label = i % len(CLASSES)
        name = CLASSES[label]
        path = folder / name / f"{name}_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "flower":
            image = flower_photo(rng, COLOURS[name], size)
        else:
            image = striped_photo(rng, label, size)
        image.save(path, quality=85)
        written.append(Written(path, label))
    return tuple(written)


def probe_images(count: int = 8, seed: int = 0, size: int = 224) -> np.ndarray:
    """Return photo-like uint8 images (smooth colour fields with grain) to compare arithmetics."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
        smooth = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        grain = rng.normal(0.0, 8.0, (size, size, 3))
        images.append(np.clip(np.asarray(smooth, np.float64) + grain, 0, 255).astype(np.uint8))
    return np.stack(images)


# The share of a dirty dataset's pixels that is each photo's own random colour field.
BACKDROP = 0.4


@dataclass(frozen=True)
class Planted:
    """A generated dataset's planted problems, as paths relative to its folder."""

    mislabelled: tuple[str, ...]  # photos filed under another class than the one they show
    shows: tuple[str, ...]  # the class each mislabelled photo shows
    duplicates: tuple[tuple[str, str], ...]  # (original, byte-for-byte copy)
    near_duplicates: tuple[tuple[str, str], ...]  # (original, resized and re-encoded copy)
    outliers: tuple[str, ...]  # photos of none of the classes


def write_dirty_photos(
    folder: Path,
    per_class: int,
    seed: int = 0,
    mislabelled: float = 0.05,
    copies: int = 5,
    outliers: int = 5,
) -> Planted:
    """Write a striped dataset with planted problems, the kinds real photo folders have: a
    share of photos filed under the wrong class, exact copies, resized re-encoded copies, and
    photos that show no class at all (flower-like blobs); return what was planted where."""
    rng = np.random.default_rng(seed)
    size = (160, 120)
    images: list[tuple[Image.Image, int]] = [
        (striped_photo(rng, label, size, backdrop=BACKDROP), label)
        for label in range(len(CLASSES))
        for _ in range(per_class)
    ]
    order = rng.permutation(len(images))
    moved = set(order[: round(mislabelled * len(images))].tolist())
    originals = order[len(moved) : len(moved) + 2 * copies].tolist()
    paths: list[str] = []
    planted_mislabelled, shows = [], []
    for i, (image, label) in enumerate(images):
        filed = label
        if i in moved:
            filed = (label + int(rng.integers(1, len(CLASSES)))) % len(CLASSES)
        rel = f"{CLASSES[filed]}/{CLASSES[filed]}_{i:05d}.jpg"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / rel, quality=85)
        paths.append(rel)
        if i in moved:
            planted_mislabelled.append(rel)
            shows.append(CLASSES[label])
    duplicates, near = [], []
    for n, i in enumerate(originals):
        original = paths[i]
        class_name = original.split("/")[0]
        if n < copies:
            rel = f"{class_name}/copy_of_{Path(original).name}"
            (folder / rel).write_bytes((folder / original).read_bytes())
            duplicates.append((original, rel))
        else:
            rel = f"{class_name}/resized_{Path(original).stem}.jpg"
            scale = rng.uniform(0.8, 0.95)
            small = images[i][0].resize((round(size[0] * scale), round(size[1] * scale)))
            small.save(folder / rel, quality=75)
            near.append((original, rel))
    strays = []
    for n in range(outliers):
        class_name = CLASSES[n % len(CLASSES)]
        rel = f"{class_name}/stray_{n:03d}.jpg"
        flower_photo(rng, COLOURS[CLASSES[int(rng.integers(len(CLASSES)))]], size).save(
            folder / rel, quality=85
        )
        strays.append(rel)
    return Planted(
        tuple(planted_mislabelled), tuple(shows), tuple(duplicates), tuple(near), tuple(strays)
    )
