"""How an exported model is checked against the app: the photos, and the comparisons.

The app's probabilities are `predict.Classifier.probabilities` on photos loaded by
`images.load_rgb`; an export's are its own runtime's on photos loaded by its own predict.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import ImageError
from flower_model.data.images import load_rgb
from flower_model.model.backbone import INPUT_SIZE

if TYPE_CHECKING:
    from flower_model.inference.predict import Classifier
    from flower_model.runs.store import RunInfo

# Float exports must give the app's probabilities within this.
PARITY_TOLERANCE = 1e-4
# How many validation photos each export is checked on (int8: accuracy on the whole split).
CHECK_PHOTOS = 24

# progress(what is being done, share done from 0 to 1)
Progress = Callable[[str, float], None]
# A model as a function: uint8 batch of photos -> probabilities.
Model = Callable[[np.ndarray], np.ndarray]
# A photo loader: file path -> uint8 224×224×3 (predict.py's load_photo).
PhotoLoader = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class Parity:
    """How an exported model's probabilities compare with the app's on the same photos."""

    photos: int
    max_difference: float  # max |p_export - p_app| over every photo and class
    top1_agreement: float  # share of photos with the same top class
    pixels_identical: bool = True  # whether predict.py's decoding gave the app's pixels


@dataclass(frozen=True)
class QuantizedAccuracy:
    """An int8 model against its float model on the run's whole validation split."""

    photos: int
    float_accuracy: float
    int8_accuracy: float
    top1_agreement: float


def split_photos(info: RunInfo, which: str) -> list[tuple[Path, int]]:
    """Return the run's training ('train') or validation ('val') photos that are still
    there, with the labels the run trained with (its folder's, or the class it relabelled
    the photo to)."""
    meta = info.metadata
    root = Path(meta.dataset.root)
    paths = meta.split.train if which == "train" else meta.split.val
    relabelled = meta.dataset.relabelled
    found = [(root / p, meta.class_names.index(relabelled.get(p, p.split("/")[0]))) for p in paths]
    return [(path, label) for path, label in found if path.is_file()]


def spread(items: Sequence, count: int) -> list:
    """Return up to `count` items taken evenly along the sequence (every class, in a split)."""
    if len(items) <= count:
        return list(items)
    return [items[int(i * len(items) / count)] for i in range(count)]


def check_photos(info: RunInfo, count: int = CHECK_PHOTOS) -> tuple[list[Path], np.ndarray, str]:
    """Return the photos an export is checked on, loaded as the app loads them: validation
    photos of the run, or, when its dataset is gone, generated flower-like pictures (the
    check compares numbers, not answers; there are then no files)."""
    kept, images = [], []
    for path in spread([p for p, _ in split_photos(info, "val")], count):
        try:
            images.append(load_rgb(path, size=INPUT_SIZE))
        except ImageError:
            continue
        kept.append(path)
    if kept:
        return kept, np.stack(images), "validation photos"
    from flower_model.data.synthetic import probe_images

    return [], probe_images(count), "generated pictures (the run's photos are gone)"


def probabilities(run: Model, batch: np.ndarray, size: int = 16) -> np.ndarray:
    """Return a model's probabilities for a batch, given to it `size` photos at a time."""
    starts = range(0, len(batch), size)
    rows = [np.asarray(run(batch[i : i + size]), dtype=np.float64) for i in starts]
    return np.concatenate(rows) if rows else np.zeros((0, 0))


def compare(exported: np.ndarray, app: np.ndarray, pixels_identical: bool = True) -> Parity:
    """Return how exported probabilities compare with the app's for the same photos."""
    if exported.shape != app.shape:
        raise ValueError(f"the export gives shape {exported.shape}, the app {app.shape}")
    if not len(app):
        return Parity(0, 0.0, 1.0, pixels_identical)
    return Parity(
        photos=len(app),
        max_difference=float(np.abs(exported - app).max()),
        top1_agreement=float(np.mean(exported.argmax(1) == app.argmax(1))),
        pixels_identical=pixels_identical,
    )


def check_export(
    run: Model, load_photo: PhotoLoader, classifier: Classifier, info: RunInfo
) -> tuple[Parity, str]:
    """Return how an export (its model and its photo loader) compares with the app on the
    check photos, and what those photos were."""
    paths, batch, source = check_photos(info)
    exported_batch = np.stack([load_photo(str(p)) for p in paths]) if paths else batch
    identical = bool(np.array_equal(exported_batch, batch))
    parity = compare(probabilities(run, exported_batch), classifier.probabilities(batch), identical)
    return parity, source


def _float_probabilities(
    classifier: Classifier, paths: Sequence[Path], info: RunInfo, progress: Progress
) -> np.ndarray:
    """Return the float model's probabilities of photos through the float32 feature cache
    (ResNet50 runs only for photos it has not seen at this precision)."""
    from flower_model.features.cache import FeatureCache
    from flower_model.features.compute import extract_features
    from flower_model.features.extractor import FeatureExtractor

    extractor = FeatureExtractor.create(
        classifier.networks.resnet, "float32", identity=info.metadata.weights.identity
    )
    hashes = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]

    def step(done: int, total: int) -> None:
        progress(f"float model on validation photo {done}/{total}", done / max(total, 1))

    features, _ = extract_features(
        list(paths), hashes, extractor, FeatureCache(extractor.cache_key), progress=step
    )
    return classifier.networks.head.predict(features, verbose=0)


def quantized_accuracy(
    run: Model, classifier: Classifier, info: RunInfo, progress: Progress
) -> QuantizedAccuracy | None:
    """Return an int8 model against the float one on every validation photo still there
    (None when there are none)."""
    photos = split_photos(info, "val")
    int8, labels, kept = [], [], []
    for done, (path, label) in enumerate(photos):
        what = f"int8 model on validation photo {done + 1}/{len(photos)}"
        progress(what, 0.7 * done / len(photos))
        try:
            image = load_rgb(path, size=INPUT_SIZE)
        except ImageError:
            continue
        int8.append(np.asarray(run(image[np.newaxis]))[0])
        labels.append(label)
        kept.append(path)
    if not kept:
        return None
    floats = _float_probabilities(
        classifier, kept, info, lambda what, share: progress(what, 0.7 + 0.3 * share)
    )
    quantized, truth = np.array(int8), np.array(labels)
    return QuantizedAccuracy(
        photos=len(kept),
        float_accuracy=float(np.mean(floats.argmax(1) == truth)),
        int8_accuracy=float(np.mean(quantized.argmax(1) == truth)),
        top1_agreement=float(np.mean(quantized.argmax(1) == floats.argmax(1))),
    )
