"""Feature extraction speed: the project's pipeline from JPEG files vs the raw model call."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.photos import PhotoSet
from bench.timing import timed
from flower_model.backbone import INPUT_SIZE
from flower_model.features import Backbone, ExtractionStats, FeatureCache, extract_features
from flower_model.images import load_rgb


@dataclass(frozen=True)
class Extraction:
    """Images per second from JPEG files to cached features, and of the model alone."""

    precision: str  # what ResNet50 computed in
    images: int
    batch_size: int
    pipeline_images_per_s: float  # best repeat: decode, resize, ResNet50, cache writes
    raw_images_per_s: float  # best repeat: Backbone.run on a batch already in memory
    ratio: float  # pipeline / raw; 1.0 means the pipeline costs nothing beyond the model
    pipeline_seconds: tuple[float, ...]
    raw_seconds: tuple[float, ...]


def fresh_cache(key: str, parent: Path) -> FeatureCache:
    """Return an empty feature cache of the backbone's namespace in a new folder."""
    parent.mkdir(parents=True, exist_ok=True)
    return FeatureCache(key, root=Path(tempfile.mkdtemp(prefix="features-", dir=parent)))


def extract_from_disk(
    photos: PhotoSet, backbone: Backbone, cache: FeatureCache, batch_size: int
) -> tuple[np.ndarray, ExtractionStats, float]:
    """Return features, stats and seconds of the project's extraction of photos on disk."""
    (features, stats), seconds = timed(
        lambda: extract_features(
            list(photos.paths), list(photos.hashes), backbone, cache, batch_size=batch_size
        )
    )
    return features, stats, seconds


def ready_batch(photos: PhotoSet, batch_size: int) -> np.ndarray:
    """Return up to one batch of the photos as a uint8 array, decoded in advance."""
    count = min(batch_size, len(photos))
    return np.stack([load_rgb(p, size=INPUT_SIZE) for p in photos.paths[:count]])


def raw_seconds(backbone: Backbone, batch: np.ndarray, images: int) -> float:
    """Return the seconds Backbone.run takes over `images` images in batches of `batch`."""

    def run() -> None:
        done = 0
        while done < images:
            count = min(len(batch), images - done)
            backbone.run(batch[:count])
            done += count

    return timed(run)[1]


def measure_extraction(
    photos: PhotoSet, backbone: Backbone, work: Path, batch_size: int, repeats: int
) -> Extraction:
    """Return pipeline and raw extraction speeds, each the best of interleaved repeats."""
    key = backbone.cache_key
    batch = ready_batch(photos, batch_size)
    # Warm-up, not timed: tracing the model and tf.data's first start are one-off costs.
    backbone.run(batch)
    extract_from_disk(photos.first(len(batch)), backbone, fresh_cache(key, work), batch_size)
    pipeline, raw = [], []
    # Interleaved, so load from other processes falls on both alike.
    for _ in range(repeats):
        raw.append(raw_seconds(backbone, batch, len(photos)))
        _, stats, seconds = extract_from_disk(photos, backbone, fresh_cache(key, work), batch_size)
        if stats.computed != len(photos):
            raise RuntimeError(f"expected {len(photos)} computed features, got {stats.computed}")
        pipeline.append(seconds)
    pipeline_rate = len(photos) / min(pipeline)
    raw_rate = len(photos) / min(raw)
    return Extraction(
        precision=backbone.precision,
        images=len(photos),
        batch_size=batch_size,
        pipeline_images_per_s=pipeline_rate,
        raw_images_per_s=raw_rate,
        ratio=pipeline_rate / raw_rate,
        pipeline_seconds=tuple(pipeline),
        raw_seconds=tuple(raw),
    )
