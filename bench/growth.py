"""How extraction, re-reading the cache and training grow with the number of photos."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.extraction import extract_from_disk, fresh_cache
from bench.photos import PhotoSet
from bench.training import measure_head_fit
from flower_model.features.extractor import FeatureExtractor


@dataclass(frozen=True)
class GrowthStep:
    """One size of the growth series, from an empty feature cache."""

    images: int
    extraction_seconds: float  # every photo through the pipeline and ResNet50
    extraction_images_per_s: float
    cache_read_seconds: float  # the same photos again: every feature read from the cache
    training_seconds: float  # the head, all epochs, on the extracted features
    training_epochs: int
    cache_bytes_per_image: float


def measure_growth_step(
    photos: PhotoSet,
    extractor: FeatureExtractor,
    work: Path,
    epochs: int,
    batch_size: int,
) -> GrowthStep:
    """Return extraction, cache re-read and training times for these photos."""
    cache = fresh_cache(extractor.cache_key, work / "features")
    features, stats, extraction = extract_from_disk(photos, extractor, cache, batch_size)
    bytes_per_image = cache.bytes_used() / len(photos)
    _, again, cache_read = extract_from_disk(photos, extractor, cache, batch_size)
    if stats.computed != len(photos) or again.computed != 0:
        raise RuntimeError(
            f"expected {len(photos)} computed then 0, got {stats.computed} then {again.computed}"
        )
    labels = np.asarray(photos.labels)
    fit = measure_head_fit(features, labels, epochs, batch_size)
    return GrowthStep(
        images=len(photos),
        extraction_seconds=extraction,
        extraction_images_per_s=len(photos) / extraction,
        cache_read_seconds=cache_read,
        training_seconds=fit.seconds,
        training_epochs=fit.epochs,
        cache_bytes_per_image=bytes_per_image,
    )


def measure_growth(
    photos: PhotoSet,
    sizes: Sequence[int],
    extractor: FeatureExtractor,
    work: Path,
    epochs: int,
    batch_size: int,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[GrowthStep, ...]:
    """Return one growth step per size, smallest first."""
    steps = []
    for size in sorted(sizes):
        progress(f"growth: {size} photos")
        steps.append(measure_growth_step(photos.first(size), extractor, work, epochs, batch_size))
    return tuple(steps)
