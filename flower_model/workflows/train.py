"""Train a run, in the order of the Keras transfer-learning guide: extract every photo's
features once with the frozen ResNet50 (not even built when the cache holds them all), hold
out photos (each picture and its duplicates on one side), fit the head on the features, then,
to fine-tune, put ResNet50 under the head, unfreeze its last stage and fit again on photos;
measure on the held-out photos, save (the head alone, unless ResNet50 was fine-tuned)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import (
    FINE_TUNING_PHASE,
    HISTORY_KEYS,
    CancelToken,
    OnEvent,
    TrainEvent,
)
from flower_model.data.dataset import Dataset, ImageRecord, Split, records_for, split_dataset
from flower_model.features.extraction import DatasetFeatures, dataset_features
from flower_model.features.pipeline import image_dataset
from flower_model.metrics.calibration import calibrate
from flower_model.metrics.evaluate import evaluate_predictions
from flower_model.model.backbone import (
    INPUT_SHAPE,
    PREPROCESSING,
    build_resnet50,
    unfreeze_last_stage,
)
from flower_model.model.config import ResolvedConfig, TrainConfig, resolve_config
from flower_model.model.fitting import STOPPED_BY_USER, Features, Fit, fit_head, fit_model
from flower_model.model.head import Networks, build_head, classifier_around
from flower_model.model.scaling import Selection
from flower_model.runs.metadata import DatasetInfo, RunMetadata, WeightsInfo, versions
from flower_model.runs.store import RunInfo, RunWriter

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class _Reporter:
    """Sends each event to the caller and to the run's event log."""

    def __init__(self, writer: RunWriter, on_event: OnEvent | None) -> None:
        self.writer, self.on_event = writer, on_event

    def emit(self, event: TrainEvent) -> None:
        self.writer.log_event(event.to_json())
        if self.on_event is not None:
            self.on_event(event)

    def __call__(self, kind: str, **fields: object) -> None:
        self.emit(TrainEvent(kind=kind, **fields))


@contextmanager
def _discarded_on_failure(writer: RunWriter, report: _Reporter) -> Iterator[None]:
    """Report how a run failed or was stopped, and leave nothing of it on disk."""
    try:
        yield
    except TrainingCancelled as exc:
        report("cancelled", message=str(exc))
        writer.discard()
        raise
    except Exception as exc:
        report("error", message=str(exc) or type(exc).__name__)
        writer.discard()
        raise


@dataclass(frozen=True)
class _Photos:
    """A dataset's photos as a run splits them: training first, then held out."""

    dataset: Dataset
    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]

    @classmethod
    def split(cls, dataset: Dataset, split: Split) -> _Photos:
        return cls(dataset, records_for(dataset, split.train), records_for(dataset, split.val))

    def paths(self, records: Sequence[ImageRecord]) -> list[Path]:
        return [self.dataset.path_of(r) for r in records]

    @staticmethod
    def labels(records: Sequence[ImageRecord]) -> np.ndarray:
        return np.array([r.label for r in records], dtype=np.int64)


def train(
    dataset: Dataset,
    config: TrainConfig | None = None,
    on_event: OnEvent | None = None,
    cancel: CancelToken | None = None,
    runs_root: Path | None = None,
) -> RunInfo:
    """Train the seed's model on a dataset and save it as a run; return the saved run.

    Raises TrainingCancelled if stopped before the first epoch completed (nothing is saved).
    """
    config = config or TrainConfig()
    cancel = cancel or CancelToken()
    writer = RunWriter(runs_root)
    report = _Reporter(writer, on_event)
    started = time.time()
    with _discarded_on_failure(writer, report):
        report("start", run_id=writer.run_id, message=f"{config.mode} training")
        resolved = resolve_config(config)
        split_dataset(dataset, config.val_fraction, config.seed)  # refuse a class too small now

        computed = _extract(dataset, resolved, report, cancel)
        split = _leak_free_split(dataset, computed, config, report)
        photos = _Photos.split(dataset, split)
        head = build_head(len(dataset.class_names), seed=config.seed)
        fit, val_probabilities = _train_on_features(photos, computed, head, config, report, cancel)
        model = head  # saved alone: ResNet50 is rebuilt from its weights when the run is loaded
        if config.mode == "finetune" and fit.stopped != STOPPED_BY_USER:
            report("phase", message=f"loading ResNet50 (weights {resolved.weights.label})")
            networks = classifier_around(build_resnet50(resolved.weights, config.seed), head)
            fit, val_probabilities = _fine_tune(
                photos, networks, fit, val_probabilities, config, report, cancel
            )
            model = networks.classifier

        # Measured on the held-out photos, then saved (the head alone unless fine-tuned).
        metadata = _measured(
            writer.run_id,
            started,
            photos,
            split,
            resolved,
            computed,
            fit,
            val_probabilities,
            head_only=model is head,
        )
        report("phase", message="saving the run")
        info = writer.finish(model, metadata)
        report("end", run_id=info.run_id, message=f"saved run {info.run_id}")
        return info


def _measured(
    run_id: str,
    started: float,
    photos: _Photos,
    split: Split,
    resolved: ResolvedConfig,
    computed: DatasetFeatures,
    fit: Fit,
    val_probabilities: np.ndarray,
    head_only: bool,
) -> RunMetadata:
    """Return the run's metadata: what was trained on which photos, how, and how well it
    does on the held-out photos (its metrics and calibration)."""
    dataset, labels = photos.dataset, photos.labels(photos.val)
    return RunMetadata(
        run_id=run_id,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        seconds=round(time.time() - started, 2),
        class_names=dataset.class_names,
        input_size=INPUT_SHAPE,
        preprocessing=PREPROCESSING,
        weights=WeightsInfo.of(resolved.weights, computed.identity),
        config=resolved.config,
        dataset=DatasetInfo.of(dataset),
        split=split,
        features=computed.stats,
        history=fit.history,
        epochs_completed=fit.epochs_completed,
        best_epoch=fit.best_epoch,
        stopped=fit.stopped,
        evaluation=evaluate_predictions(labels, val_probabilities, dataset.class_names, split.val),
        versions=versions(),
        standardised_features=fit.standardised,
        fine_tuned_after=fit.fine_tuned_after,
        calibration=calibrate(labels, val_probabilities),
        head_only=head_only,
    )


def _extract(
    dataset: Dataset, resolved: ResolvedConfig, report: _Reporter, cancel: CancelToken
) -> DatasetFeatures:
    """Return every photo's features, extracting each photo once (the cache keeps them;
    ResNet50 is not even built when it holds them all)."""
    config = resolved.config
    computed = dataset_features(
        dataset,
        resolved.weights,
        config.seed,
        config.precision,
        progress=lambda done, total: report("extract", done=done, total=total),
        cancelled=cancel.is_set,
        batch_size=max(config.batch_size, 32),
        on_phase=lambda message: report("phase", message=message),
        dtype=np.float16,  # as cached: half the memory (fit_head reads float32 blocks)
    )
    stats = computed.stats
    report(
        "phase",
        message=f"features: {stats.cached} from cache, {stats.computed} computed",
        done=stats.cached,
        total=stats.total,
    )
    return computed


def _leak_free_split(
    dataset: Dataset, computed: DatasetFeatures, config: TrainConfig, report: _Reporter
) -> Split:
    """Return the run's split with every picture and its duplicates (the same bytes, or
    near-duplicates by their features) on one side, so no picture is trained on and held out."""
    from flower_model.audit.near_duplicates import near_duplicate_sets
    from flower_model.data.groups import duplicate_groups

    report("phase", message="keeping duplicates on one side of the split")
    records = dataset.records
    groups = duplicate_groups(
        [r.path for r in records],
        [r.sha256 for r in records],
        [dataset.class_names[r.label] for r in records],
        near_duplicate_sets(
            computed.features, known_as=(computed.cache_key, [r.sha256 for r in records])
        ),
    )
    return split_dataset(
        dataset, config.val_fraction, config.seed, groups=[g.paths for g in groups]
    )


def _train_on_features(
    photos: _Photos,
    computed: DatasetFeatures,
    head: keras.Model,
    config: TrainConfig,
    report: _Reporter,
    cancel: CancelToken,
) -> tuple[Fit, np.ndarray]:
    """Fit the head on the training photos' features; return the fit and the held-out
    photos' probabilities."""
    report("phase", message="training the head")

    row_of = {r.path: i for i, r in enumerate(photos.dataset.records)}

    def part(records: Sequence[ImageRecord]) -> Features:
        # The rows named, not copied: fit_head reads them a block at a time.
        rows = np.fromiter((row_of[r.path] for r in records), np.int64, len(records))
        return Selection(computed.features, rows), photos.labels(records)

    train_part, val_part = part(photos.train), part(photos.val)
    fit = fit_head(head, train_part, val_part, config, report.emit, cancel)
    # Called directly: Keras' predict would trace a new function for every run (measured
    # 0.1-0.2 s) to compute 800 rows' probabilities in milliseconds.
    val_rows = computed.features[val_part[0].index].astype(np.float32)
    return fit, np.asarray(head(val_rows, training=False))


def _fine_tune(
    photos: _Photos,
    networks: Networks,
    head_fit: Fit,
    head_probabilities: np.ndarray,
    config: TrainConfig,
    report: _Reporter,
    cancel: CancelToken,
) -> tuple[Fit, np.ndarray]:
    """Unfreeze ResNet50's last stage and fit it with the trained head on augmented photos;
    return both fits as one and the held-out photos' probabilities. Stopped before a
    fine-tuning epoch completed, the head's fit stands, as it was."""
    unfreeze_last_stage(networks.resnet)
    before = networks.classifier.get_weights()

    def batches(records: Sequence[ImageRecord], **options: object) -> tf.data.Dataset:
        labels = photos.labels(records)
        paths = photos.paths(records)
        return image_dataset(paths, labels, config.batch_size, preprocessed=True, **options)

    train_data = batches(photos.train, shuffle_seed=config.seed, augment=True)
    val_data = batches(photos.val)
    report("phase", message=FINE_TUNING_PHASE)
    steps = math.ceil(len(photos.train) / config.batch_size)
    try:
        rate = config.fine_tune_learning_rate
        tuned = fit_model(
            networks.classifier, train_data, val_data, steps, config, rate, report.emit, cancel
        )
    except TrainingCancelled:
        networks.classifier.set_weights(before)
        return replace(head_fit, stopped=STOPPED_BY_USER), head_probabilities
    head_epochs = head_fit.epochs_completed
    fit = Fit(
        history={k: head_fit.history[k] + tuned.history[k] for k in HISTORY_KEYS},
        best_epoch=head_epochs + tuned.best_epoch,
        stopped=tuned.stopped,
        seconds=head_fit.seconds + tuned.seconds,
        standardised=head_fit.standardised,
        fine_tuned_after=head_epochs,
    )
    return fit, networks.classifier.predict(val_data.map(lambda x, y: x), verbose=0)
