"""Training speed: the head on cached features (the library's `fit_head`) vs the seed's plain
fit through ResNet50 every epoch (Keras' own compile and fit, as the seed wrote it); and the
library's loop, public APIs only, beside the private-API loop it replaced (a copy of which,
bench/private_loop.py, is kept for this comparison alone). `python -m bench.training` times
the two loops alone, at the full run's sizes (about 2 minutes)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import keras
import numpy as np

from bench import private_loop
from bench.photos import PhotoSet
from bench.timing import timed
from flower_model.core.events import TrainEvent
from flower_model.data.synthetic import CLASSES
from flower_model.features.pipeline import image_dataset
from flower_model.model.backbone import FEATURE_DIM
from flower_model.model.config import TrainConfig
from flower_model.model.feature_fit import forget_traced_loops
from flower_model.model.fitting import Fit, fit_head
from flower_model.model.head import build_head, build_networks

VAL_FRACTION = 0.2
# The library's head fit (20 epochs of 4,000 features, tracing included) since its loop uses
# public APIs only. The private-API loop it replaced took about 2.0 s on the 2-core Xeon
# (settings' cached_training_seconds_max); without TensorFlow's fused Adam kernel and without
# calls that skip Grappler (both private), this much more was allowed.
PUBLIC_LOOP_SECONDS_MAX = 2.5

HeadFitter = Callable[..., Fit]  # fit_head's signature: (head, train, val, config, on_event)


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
class LoopComparison:
    """The library's head fit (public APIs only) and the private-API loop it replaced
    (bench/private_loop.py), the two timed in turn in one process."""

    cached: HeadFit  # the first fit of its shape in the process: the loop is traced (median)
    cached_again: HeadFit  # the next fit: the traced loop is reused (a server's next training)
    cached_seconds: tuple[float, ...]  # every timed first fit, and every next fit
    cached_again_seconds: tuple[float, ...]
    private: HeadFit  # the same fits through the private-API loop
    private_again: HeadFit
    private_seconds: tuple[float, ...]
    private_again_seconds: tuple[float, ...]
    public_over_private: float  # median of the repeats' ratios, tracing included
    public_over_private_again: float  # the same for the next fits
    target_seconds: float  # the library's fit, tracing included


@dataclass(frozen=True)
class Training:
    """Head training from cache vs the seed's plain fit, extrapolated to the same work; the
    fields up to `target_seconds` are the `LoopComparison`'s."""

    cached: HeadFit  # the first fit of its shape in the process: the loop is traced (median)
    cached_again: HeadFit  # the next fit: the traced loop is reused (a server's next training)
    cached_seconds: tuple[float, ...]  # every timed first fit, and every next fit
    cached_again_seconds: tuple[float, ...]
    private: HeadFit
    private_again: HeadFit
    private_seconds: tuple[float, ...]
    private_again_seconds: tuple[float, ...]
    public_over_private: float  # median of the repeats' ratios, tracing included
    public_over_private_again: float  # the same for the next fits
    target_seconds: float  # the library's fit, tracing included
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


def _median_fit(fits: list[HeadFit]) -> HeadFit:
    return sorted(fits, key=lambda fit: fit.seconds)[len(fits) // 2]


def measure_head_fit(
    features: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    batch_size: int,
    fitter: HeadFitter = fit_head,
) -> HeadFit:
    """Return the time of `fit_head` (or of another fitter with its signature) on a fresh
    head, the last fifth of the rows held out."""
    n_train = len(features) - max(1, round(len(features) * VAL_FRACTION))
    # patience=0: every epoch runs, so the time is that of `epochs` epochs.
    config = TrainConfig(epochs=epochs, batch_size=batch_size, weights="none", patience=0)
    events: list[TrainEvent] = []
    head = build_head(len(CLASSES))  # built before the clock starts, as train.py builds it
    fit, seconds = timed(
        lambda: fitter(
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


def compare_loops(
    features: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    batch_size: int,
    repeats: int,
) -> LoopComparison:
    """Return the library's `fit_head` and the private-API loop's, each timed `repeats` times
    as a process's first fit of the head's shape (tracing included) and as its next, the two
    loops in turn."""
    public: tuple[list[HeadFit], list[HeadFit]] = ([], [])
    private: tuple[list[HeadFit], list[HeadFit]] = ([], [])
    turns = [(public, fit_head), (private, private_loop.fit_head)]
    # Which loop goes first alternates: the machine's speed drifts from minute to minute.
    for repeat in range(repeats):
        # Traced before (the saved small run, say): tracing is timed.
        forget_traced_loops()
        private_loop.forget_traced_loops()
        for (firsts, agains), fitter in turns if repeat % 2 == 0 else turns[::-1]:
            firsts.append(measure_head_fit(features, labels, epochs, batch_size, fitter))
            agains.append(measure_head_fit(features, labels, epochs, batch_size, fitter))

    def ratio(ours: list[HeadFit], theirs: list[HeadFit]) -> float:
        return statistics.median(a.seconds / b.seconds for a, b in zip(ours, theirs, strict=True))

    def seconds(fits: list[HeadFit]) -> tuple[float, ...]:
        return tuple(fit.seconds for fit in fits)

    return LoopComparison(
        cached=_median_fit(public[0]),
        cached_again=_median_fit(public[1]),
        cached_seconds=seconds(public[0]),
        cached_again_seconds=seconds(public[1]),
        private=_median_fit(private[0]),
        private_again=_median_fit(private[1]),
        private_seconds=seconds(private[0]),
        private_again_seconds=seconds(private[1]),
        public_over_private=ratio(public[0], private[0]),
        public_over_private_again=ratio(public[1], private[1]),
        target_seconds=PUBLIC_LOOP_SECONDS_MAX,
    )


def measure_training(
    resnet: keras.Model,
    photos: PhotoSet,
    images: int,
    epochs: int,
    batch_size: int,
    pipeline_images_per_s: float,
    other_batch_size: int,
    repeats: int,
) -> Training:
    """Return cached-feature training of `images` for `epochs` vs the plain fit, extrapolated
    (the head's fits each timed `repeats` times)."""
    features, labels = random_features(images)
    loops = compare_loops(features, labels, epochs, batch_size, repeats)
    other = measure_head_fit(features, labels, epochs, other_batch_size)
    plain = plain_epoch(resnet, photos, batch_size)
    estimate = plain.estimate(images, epochs)
    extraction = images / pipeline_images_per_s
    return Training(
        **{field.name: getattr(loops, field.name) for field in fields(loops)},
        cached_other_batch=other,
        plain=plain,
        plain_seconds_estimate=estimate,
        speedup=estimate / loops.cached.seconds,
        extraction_seconds_estimate=extraction,
        speedup_first_run=estimate / (extraction + loops.cached.seconds),
    )


def main() -> None:
    """`python -m bench.training`: the two loops' head fits alone, at the full run's sizes
    (4,000 features, 20 epochs, batch 64), printed as the benchmark's table rows."""
    from bench.report import loop_rows
    from bench.settings import FULL
    from flower_model.service.runtime import settle_objects, start_tensorflow

    start_tensorflow()
    settle_objects()
    features, labels = random_features(FULL.training_images)
    comparison = compare_loops(
        features, labels, FULL.epochs, FULL.batch_size, FULL.head_fit_repeats
    )
    print("| Measurement | Result | Target | Met |\n|---|---|---|---|")
    print("\n".join(loop_rows(comparison)))


if __name__ == "__main__":
    main()
