"""Feature extraction speed: the project's pipeline from JPEG files vs the raw model call."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.photos import PhotoSet
from bench.timing import timed
from flower_model.data.images import load_rgb
from flower_model.features.cache import ExtractionStats, FeatureCache
from flower_model.features.compute import extract_features
from flower_model.features.extractor import FeatureExtractor
from flower_model.model.backbone import INPUT_SIZE


@dataclass(frozen=True)
class Extraction:
    """Images per second from JPEG files to cached features, and of the model alone."""

    precision: str  # what ResNet50 computed in
    images: int
    batch_size: int
    pipeline_images_per_s: float  # best repeat: decode, resize, ResNet50, cache writes
    raw_images_per_s: float  # best repeat: FeatureExtractor.run on a batch already in memory
    ratio: float  # pipeline / raw; 1.0 means the pipeline costs nothing beyond the model
    pipeline_seconds: tuple[float, ...]
    raw_seconds: tuple[float, ...]


def fresh_cache(key: str, parent: Path) -> FeatureCache:
    """Return an empty feature cache of an extractor's namespace in a new folder."""
    parent.mkdir(parents=True, exist_ok=True)
    return FeatureCache(key, root=Path(tempfile.mkdtemp(prefix="features-", dir=parent)))


def extract_from_disk(
    photos: PhotoSet, extractor: FeatureExtractor, cache: FeatureCache, batch_size: int
) -> tuple[np.ndarray, ExtractionStats, float]:
    """Return features, stats and seconds of the project's extraction of photos on disk."""
    (features, stats), seconds = timed(
        lambda: extract_features(
            list(photos.paths), list(photos.hashes), extractor, cache, batch_size=batch_size
        )
    )
    return features, stats, seconds


def ready_batch(photos: PhotoSet, batch_size: int) -> np.ndarray:
    """Return up to one batch of the photos as a uint8 array, decoded in advance."""
    count = min(batch_size, len(photos))
    return np.stack([load_rgb(p, size=INPUT_SIZE) for p in photos.paths[:count]])


def raw_seconds(extractor: FeatureExtractor, batch: np.ndarray, images: int) -> float:
    """Return the seconds FeatureExtractor.run takes over `images` images in batches of `batch`."""

    def run() -> None:
        done = 0
        while done < images:
            count = min(len(batch), images - done)
            extractor.run(batch[:count])
            done += count

    return timed(run)[1]


def measure_extraction(
    photos: PhotoSet, extractor: FeatureExtractor, work: Path, batch_size: int, repeats: int
) -> Extraction:
    """Return pipeline and raw extraction speeds, each the best of interleaved repeats."""
    key = extractor.cache_key
    batch = ready_batch(photos, batch_size)
    # Warm-up, not timed: tracing the model and tf.data's first start are one-off costs.
    extractor.run(batch)
    extract_from_disk(photos.first(len(batch)), extractor, fresh_cache(key, work), batch_size)
    pipeline, raw = [], []
    # Interleaved, so load from other processes falls on both alike.
    for _ in range(repeats):
        raw.append(raw_seconds(extractor, batch, len(photos)))
        _, stats, seconds = extract_from_disk(photos, extractor, fresh_cache(key, work), batch_size)
        if stats.computed != len(photos):
            raise RuntimeError(f"expected {len(photos)} computed features, got {stats.computed}")
        pipeline.append(seconds)
    pipeline_rate = len(photos) / min(pipeline)
    raw_rate = len(photos) / min(raw)
    return Extraction(
        precision=extractor.precision,
        images=len(photos),
        batch_size=batch_size,
        pipeline_images_per_s=pipeline_rate,
        raw_images_per_s=raw_rate,
        ratio=pipeline_rate / raw_rate,
        pipeline_seconds=tuple(pipeline),
        raw_seconds=tuple(raw),
    )
