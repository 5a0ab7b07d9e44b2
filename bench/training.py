"""Training speed: the head on cached features (the library's `fit_head`) vs the seed's plain
fit through ResNet50 every epoch (Keras' own compile and fit, as the seed wrote it)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import keras
import numpy as np

from bench.photos import PhotoSet
from bench.timing import timed
from flower_model.core.events import TrainEvent
from flower_model.data.synthetic import CLASSES
from flower_model.features.pipeline import image_dataset
from flower_model.model.backbone import FEATURE_DIM
from flower_model.model.config import TrainConfig
from flower_model.model.feature_fit import forget_traced_loops
from flower_model.model.fitting import fit_head
from flower_model.model.head import build_head, build_networks

VAL_FRACTION = 0.2


@dataclass(frozen=True)
class HeadFit:
    """One training of the head on features, through the library's `fit_head`."""

    images: int
    batch_size: int
    epochs: int  # epochs completed
    seconds: float  # fit_head: standardising, compile, tracing, every epoch, folding
    epoch_seconds: float  # median epoch after the first (the first includes tracing)
    val_accuracy: float  # at the best epoch


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

    cached: HeadFit  # the first fit of its shape in the process: the loop is traced (median)
    cached_again: HeadFit  # the next fit: the traced loop is reused (a server's next training)
    cached_seconds: tuple[float, ...]  # every timed first fit, and every next fit
    cached_again_seconds: tuple[float, ...]
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


# The head's fits are timed this many times, the median kept: this machine's speed drifts by
# 5-10 % from minute to minute (measured), as much as a change under study.
HEAD_FIT_REPEATS = 3


def _median_fit(fits: list[HeadFit]) -> HeadFit:
    return sorted(fits, key=lambda fit: fit.seconds)[len(fits) // 2]


def measure_head_fit(
    features: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int
) -> HeadFit:
    """Return the time of `fit_head` on a fresh head, the last fifth of the rows held out."""
    n_train = len(features) - max(1, round(len(features) * VAL_FRACTION))
    # patience=0: every epoch runs, so the time is that of `epochs` epochs.
    config = TrainConfig(epochs=epochs, batch_size=batch_size, weights="none", patience=0)
    events: list[TrainEvent] = []
    head = build_head(len(CLASSES))  # built before the clock starts, as train.py builds it
    fit, seconds = timed(
        lambda: fit_head(
            head,
            (features[:n_train], labels[:n_train]),
            (features[n_train:], labels[n_train:]),
            config,
            events.append,
        )
    )
    elapsed = [e.elapsed for e in events if e.kind == "epoch" and e.elapsed is not None]
    epoch_times = [b - a for a, b in zip([0.0, *elapsed[:-1]], elapsed, strict=True)]
    epochs_done = [e for e in events if e.kind == "epoch"]
    return HeadFit(
        images=len(features),
        batch_size=batch_size,
        epochs=fit.epochs_completed,
        seconds=seconds,
        epoch_seconds=statistics.median(epoch_times[1:] or epoch_times),
        val_accuracy=epochs_done[fit.best_epoch - 1].val_accuracy,
    )


class EpochTimes(keras.callbacks.Callback):
    """Keeps each epoch's seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def plain_epoch(resnet: keras.Model, photos: PhotoSet, batch_size: int) -> PlainEpoch:
    """Return the time of one epoch of the seed's plain fit: the full classifier, compiled with
    Keras' Adam, on photos decoded from disk and sent through ResNet50 every epoch."""
    classifier = build_networks(resnet, len(CLASSES)).classifier
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    data = image_dataset(
        list(photos.paths), list(photos.labels), batch_size, shuffle_seed=42, preprocessed=True
    )
    times = EpochTimes()
    classifier.fit(data, epochs=2, callbacks=[times], shuffle=False, verbose=0)
    return PlainEpoch(
        images=len(photos), first_epoch_seconds=times.seconds[0], epoch_seconds=times.seconds[1]
    )


def measure_training(
    resnet: keras.Model,
    photos: PhotoSet,
    images: int,
    epochs: int,
    batch_size: int,
    pipeline_images_per_s: float,
    other_batch_size: int,
) -> Training:
    """Return cached-feature training of `images` for `epochs` vs the plain fit, extrapolated."""
    features, labels = random_features(images)
    firsts, agains = [], []
    for _ in range(HEAD_FIT_REPEATS):
        forget_traced_loops()  # traced before (the saved small run, say): tracing is timed
        firsts.append(measure_head_fit(features, labels, epochs, batch_size))
        agains.append(measure_head_fit(features, labels, epochs, batch_size))
    cached, again = _median_fit(firsts), _median_fit(agains)
    other = measure_head_fit(features, labels, epochs, other_batch_size)
    plain = plain_epoch(resnet, photos, batch_size)
    estimate = plain.estimate(images, epochs)
    extraction = images / pipeline_images_per_s
    return Training(
        cached=cached,
        cached_again=again,
        cached_seconds=tuple(fit.seconds for fit in firsts),
        cached_again_seconds=tuple(fit.seconds for fit in agains),
        cached_other_batch=other,
        plain=plain,
        plain_seconds_estimate=estimate,
        speedup=estimate / cached.seconds,
        extraction_seconds_estimate=extraction,
        speedup_first_run=estimate / (extraction + cached.seconds),
    )
