"""Training speed: the head on cached features (the project's way) vs the seed's plain fit."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.photos import CLASSES, PhotoSet
from bench.timing import timed
from flower_model.backbone import FEATURE_DIM, preprocess
from flower_model.head import build_networks
from flower_model.pipeline import feature_dataset, image_dataset
from flower_model.runs import RunWriter
from flower_model.train import CancelToken, TrainConfig, TrainEvent, _fit, _Reporter

if TYPE_CHECKING:
    import keras

VAL_FRACTION = 0.2


@dataclass(frozen=True)
class HeadFit:
    """One training of the head on features, through train.py's own fit."""

    images: int
    batch_size: int
    epochs: int  # epochs completed
    seconds: float  # the whole fit: compile, tracing and every epoch
    epoch_seconds: float  # median epoch after the first (the first includes tracing)


@dataclass(frozen=True)
class PlainEpoch:
    """The seed's way: fit the full classifier on photos, through ResNet50 every epoch."""

    images: int
    first_epoch_seconds: float  # includes tracing
    epoch_seconds: float  # the second epoch

    def estimate(self, images: int, epochs: int) -> float:
        """Return the seconds the plain way would take for `images` photos and `epochs`."""
        return self.epoch_seconds / self.images * images * epochs


@dataclass(frozen=True)
class Training:
    """Head training from cache vs the seed's plain fit, extrapolated to the same work."""

    cached: HeadFit
    cached_other_batch: HeadFit  # the same at another batch size
    plain: PlainEpoch
    plain_seconds_estimate: float  # plain epoch extrapolated to cached.images × epochs
    speedup: float  # plain estimate / cached.seconds
    extraction_seconds_estimate: float  # one ResNet50 pass over the photos, at pipeline speed
    speedup_first_run: float  # plain estimate / (one extraction + cached training)


def random_features(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return non-negative features shaped like ResNet50's pooled output, and class labels."""
    rng = np.random.default_rng(seed)
    features = np.abs(rng.normal(0.0, 1.0, (count, FEATURE_DIM))).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), count)
    return features, labels


def _fit_timed(
    model: keras.Model,
    train_data: object,
    val_data: object,
    config: TrainConfig,
    steps: int,
    runs_root: Path,
) -> tuple[list[float], float]:
    """Return each epoch's seconds and the whole fit's seconds, through train.py's `_fit`."""
    events: list[TrainEvent] = []
    writer = RunWriter(runs_root)
    report = _Reporter(writer, events.append)
    try:
        _, seconds = timed(
            lambda: _fit(model, train_data, val_data, config, steps, report, CancelToken())
        )
    finally:
        writer.discard()
    elapsed = [e.elapsed for e in events if e.kind == "epoch" and e.elapsed is not None]
    epochs = [b - a for a, b in zip([0.0, *elapsed[:-1]], elapsed, strict=True)]
    return epochs, seconds


def fit_head(
    backbone: keras.Model,
    features: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    batch_size: int,
    runs_root: Path,
) -> HeadFit:
    """Return the time of training a fresh head on features as train.py's features mode does."""
    networks = build_networks(backbone, len(CLASSES))
    n_train = len(features) - max(1, round(len(features) * VAL_FRACTION))
    # patience=0: every epoch runs, so the time is that of `epochs` epochs.
    config = TrainConfig(epochs=epochs, batch_size=batch_size, weights="none", patience=0)
    epoch_times, seconds = _fit_timed(
        networks.head,
        feature_dataset(features[:n_train], labels[:n_train], batch_size, shuffle_seed=42),
        feature_dataset(features[n_train:], labels[n_train:], batch_size),
        config,
        math.ceil(n_train / batch_size),
        runs_root,
    )
    steady = epoch_times[1:] or epoch_times
    return HeadFit(
        images=len(features),
        batch_size=batch_size,
        epochs=len(epoch_times),
        seconds=seconds,
        epoch_seconds=statistics.median(steady),
    )


def plain_epoch(
    backbone: keras.Model, photos: PhotoSet, batch_size: int, runs_root: Path
) -> PlainEpoch:
    """Return the time of one epoch of the full classifier's fit on photos decoded from disk.

    It runs through train.py's own fit, so its optimizer is FusedAdam rather than the seed's
    Keras Adam; only the head trains, and its update is a tiny part of an epoch through ResNet50.
    """
    networks = build_networks(backbone, len(CLASSES))
    data = image_dataset(list(photos.paths), list(photos.labels), batch_size, shuffle_seed=42)
    data = data.map(lambda x, y: (preprocess(x), y))
    config = TrainConfig(epochs=2, batch_size=batch_size, weights="none", patience=0)
    steps = math.ceil(len(photos) / batch_size)
    epoch_times, _ = _fit_timed(networks.classifier, data, None, config, steps, runs_root)
    if len(epoch_times) != 2:
        raise RuntimeError(f"the plain fit completed {len(epoch_times)} epochs, not 2")
    return PlainEpoch(
        images=len(photos), first_epoch_seconds=epoch_times[0], epoch_seconds=epoch_times[1]
    )


def measure_training(
    backbone: keras.Model,
    photos: PhotoSet,
    images: int,
    epochs: int,
    batch_size: int,
    pipeline_images_per_s: float,
    runs_root: Path,
    other_batch_size: int,
) -> Training:
    """Return cached-feature training of `images` for `epochs` vs the plain fit, extrapolated."""
    features, labels = random_features(images)
    cached = fit_head(backbone, features, labels, epochs, batch_size, runs_root)
    other = fit_head(backbone, features, labels, epochs, other_batch_size, runs_root)
    plain = plain_epoch(backbone, photos, batch_size, runs_root)
    estimate = plain.estimate(images, epochs)
    extraction = images / pipeline_images_per_s
    return Training(
        cached=cached,
        cached_other_batch=other,
        plain=plain,
        plain_seconds_estimate=estimate,
        speedup=estimate / cached.seconds,
        extraction_seconds_estimate=extraction,
        speedup_first_run=estimate / (extraction + cached.seconds),
    )
