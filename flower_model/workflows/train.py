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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import TrainingCancelled, TrainingError
from flower_model.core.events import (
    FINE_TUNING_PHASE,
    HISTORY_KEYS,
    CancelToken,
    OnEvent,
    TrainEvent,
)
from flower_model.data.dataset import Dataset, ImageRecord, Split, split_dataset
from flower_model.features.extraction import DatasetFeatures
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
from flower_model.model.search import Scores
from flower_model.runs.metadata import DatasetInfo, RunMetadata, WeightsInfo, versions
from flower_model.runs.store import RunInfo, RunWriter
from flower_model.workflows.prepare import Photos, extract, leak_free_split, training_part

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


def train(
    dataset: Dataset,
    config: TrainConfig | None = None,
    on_event: OnEvent | None = None,
    cancel: CancelToken | None = None,
    runs_root: Path | None = None,
    owner: str = "",
) -> RunInfo:
    """Train the seed's model on a dataset and save it as a run (`owner`: who asked for it,
    on a shared server); return the saved run.

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

        computed = extract(dataset, resolved, report, cancel)
        split = leak_free_split(dataset, computed, config, report)
        photos = Photos.split(dataset, split)
        head = build_head(len(dataset.class_names), config.seed, config.dropout)
        fit, val_probabilities = _train_on_features(photos, computed, head, config, report, cancel)
        cross_validated = _cross_validate(photos, computed, split, config, report, cancel)
        model = head  # saved alone: ResNet50 is rebuilt from its weights when the run is loaded
        if config.mode == "finetune" and fit.stopped != STOPPED_BY_USER and cancel.is_set():
            # Stopped after the head's last epoch: no fine-tuning starts.
            fit = replace(fit, stopped=STOPPED_BY_USER)
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
            cross_validated=cross_validated,
            owner=owner,
        )
        report("phase", message="saving the run")
        info = writer.finish(model, metadata)
        report("end", run_id=info.run_id, message=f"saved run {info.run_id}")
        return info


def _measured(
    run_id: str,
    started: float,
    photos: Photos,
    split: Split,
    resolved: ResolvedConfig,
    computed: DatasetFeatures,
    fit: Fit,
    val_probabilities: np.ndarray,
    head_only: bool,
    cross_validated: Scores | None = None,
    owner: str = "",
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
        cross_validation=cross_validated,
        owner=owner,
    )


def _cross_validate(
    photos: Photos,
    computed: DatasetFeatures,
    split: Split,
    config: TrainConfig,
    report: _Reporter,
    cancel: CancelToken,
) -> Scores | None:
    """Return the head's scores by k-fold cross-validation on the training photos (the
    folds and settings a search scores a trial with), or None when not asked for, stopped,
    or a fold diverged."""
    from flower_model.model.search import cross_validate, fold_groups, stratified_folds

    if not config.cross_validation:
        return None
    part = training_part(photos, computed, split)
    groups = fold_groups(len(part.labels), part.groups)
    folds = stratified_folds(part.labels, groups, config.cross_validation, config.seed)
    report(
        "phase",
        message=f"cross-validating the head: {len(folds)} folds of the "
        f"{len(part.labels):,} training photos",
    )
    classes = len(photos.dataset.class_names)
    try:
        return cross_validate(part.features, part.labels, classes, config, folds, None, cancel)
    except (TrainingCancelled, TrainingError) as exc:
        report("phase", message=f"cross-validation left out: {exc}")
        return None


def _train_on_features(
    photos: Photos,
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
    photos: Photos,
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
    if cancel.is_set():  # asked while ResNet50 was being built: the head's fit stands
        return replace(head_fit, stopped=STOPPED_BY_USER), head_probabilities
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
