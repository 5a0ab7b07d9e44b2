"""Train a run: features once through the frozen ResNet50, then the head; events; cancellation."""

from __future__ import annotations

import math
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model import __version__
from flower_model.backbone import (
    INPUT_SIZE,
    PREPROCESSING,
    build_backbone,
    preprocess,
    resolve_weights,
    unfreeze_last_stage,
    weights_identity,
)
from flower_model.data import Dataset, Split, records_for, split_dataset
from flower_model.errors import TrainingCancelled
from flower_model.evaluate import evaluate_predictions
from flower_model.features import Backbone, FeatureCache, extract_features
from flower_model.head import build_networks
from flower_model.inference import validate_precision
from flower_model.pipeline import feature_dataset, image_dataset
from flower_model.runs import RunInfo, RunWriter

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

MODES = ("features", "finetune")
# Learning rates when none is given: the head alone learns fast on ImageNet features; on random
# features (large, shared offsets) 1e-3 collapses to the class prior, while 1e-4 reached 42%
# held-out accuracy on the 500-photo sample (measured; 1e-3: 25%); fine-tuning must not wreck conv5.
DEFAULT_LEARNING_RATE = {"features": 1e-3, "features-random": 1e-4, "finetune": 1e-5}
# Batch events are sent at most this often, so a fast head does not flood the UI.
BATCH_EVENT_SECONDS = 0.2
STOP_FILE = "STOP"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run."""

    epochs: int = 20
    # 64, not 32: a step of the head costs about as much at 64 as at 32 on a 2-core CPU, so an
    # epoch takes about a third less (`make bench`: 20 epochs on 4,000 features 6.7 s, 4.4 s).
    batch_size: int = 64
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATE for the mode and weights
    val_fraction: float = 0.2
    seed: int = 42
    patience: int = 5  # epochs without val_loss improvement before stopping; 0: never stop early
    mode: str = "features"  # "features": head on cached features; "finetune": conv5 + head
    weights: str = "imagenet"  # "imagenet", "none" (no transfer learning) or a weights file
    precision: str = "auto"  # ResNet50's arithmetic when extracting features (see inference.py)

    def __post_init__(self) -> None:
        validate_precision(self.precision)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"the learning rate must be positive, not {self.learning_rate}")
        if self.patience < 0:
            raise ValueError(f"patience must be 0 (off) or more, not {self.patience}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"the validation share must be between 0 and 1, not {self.val_fraction}"
            )

    @property
    def lr(self) -> float:
        """Return the learning rate in effect."""
        if self.learning_rate is not None:
            return self.learning_rate
        if self.mode == "features" and self.weights.strip().lower() == "none":
            return DEFAULT_LEARNING_RATE["features-random"]
        return DEFAULT_LEARNING_RATE[self.mode]


@dataclass(frozen=True)
class TrainEvent:
    """One thing that happened while training; fields that do not apply are None.

    kinds: start, phase, extract (done/total), batch, epoch, end, cancelled, error.
    """

    kind: str
    time: float = field(default_factory=time.time)
    run_id: str | None = None
    message: str | None = None
    done: int | None = None
    total: int | None = None
    epoch: int | None = None  # 1-based
    epochs: int | None = None
    batch: int | None = None  # 1-based
    batches: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    elapsed: float | None = None  # seconds since training of the head started
    eta: float | None = None  # seconds left, estimated

    def to_json(self) -> dict:
        """Return the event without its empty fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class CancelToken:
    """Asks a training to stop: from this process with `cancel()`, or another by a stop file."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.stop_file: Path | None = None

    def cancel(self) -> None:
        """Ask the training to stop after the current batch."""
        self._event.set()

    def is_set(self) -> bool:
        """Return whether a stop was asked for, here or by the run's stop file."""
        if self._event.is_set():
            return True
        return self.stop_file is not None and self.stop_file.exists()


def request_stop(partial_run: Path) -> None:
    """Ask the training that writes this partial run folder (in any process) to stop."""
    (partial_run / STOP_FILE).touch()


class _Reporter:
    """Sends events to the caller and the run's event log."""

    def __init__(self, writer: RunWriter, on_event: Callable[[TrainEvent], None] | None) -> None:
        self.writer = writer
        self.on_event = on_event

    def __call__(self, kind: str, **fields: object) -> TrainEvent:
        event = TrainEvent(kind=kind, run_id=self.writer.run_id, **fields)
        self.writer.log_event(event.to_json())
        if self.on_event is not None:
            self.on_event(event)
        return event


def _progress_callback(
    report: _Reporter, cancel: CancelToken, epochs: int, steps: int
) -> keras.callbacks.Callback:
    """Return a callback that reports batches and epochs, keeps the best completed epoch's
    weights, and stops within one batch when asked."""
    import keras

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {
                "loss": [],
                "accuracy": [],
                "val_loss": [],
                "val_accuracy": [],
            }
            self.best_loss = math.inf
            self.best_epoch = 0
            self.best_weights: list | None = None
            self.cancelled = False
            self.start = time.perf_counter()
            self.last_sent = 0.0
            self.epoch = 0

        def _eta(self, steps_done: int) -> tuple[float, float]:
            elapsed = time.perf_counter() - self.start
            left = epochs * steps - steps_done
            return elapsed, elapsed / max(steps_done, 1) * left

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if cancel.is_set():
                self.cancelled = True
                self.model.stop_training = True
            now = time.perf_counter()
            if now - self.last_sent < BATCH_EVENT_SECONDS and batch + 1 < steps:
                return
            self.last_sent = now
            logs = logs or {}
            elapsed, eta = self._eta(self.epoch * steps + batch + 1)
            report(
                "batch",
                epoch=self.epoch + 1,
                epochs=epochs,
                batch=batch + 1,
                batches=steps,
                loss=float(logs.get("loss", math.nan)),
                accuracy=float(logs.get("accuracy", math.nan)),
                elapsed=elapsed,
                eta=eta,
            )

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if self.cancelled:
                return  # a stopped epoch is not a completed one
            logs = logs or {}
            for key in self.history:
                self.history[key].append(float(logs.get(key, math.nan)))
            val_loss = float(logs.get("val_loss", math.inf))
            if val_loss < self.best_loss:
                self.best_loss, self.best_epoch = val_loss, epoch + 1
                self.best_weights = self.model.get_weights()
            elapsed, eta = self._eta((epoch + 1) * steps)
            report(
                "epoch",
                epoch=epoch + 1,
                epochs=epochs,
                loss=self.history["loss"][-1],
                accuracy=self.history["accuracy"][-1],
                val_loss=self.history["val_loss"][-1],
                val_accuracy=self.history["val_accuracy"][-1],
                elapsed=elapsed,
                eta=eta,
            )
            if cancel.is_set():
                self.cancelled = True
                self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return Progress()


def _fit(
    model: keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset | None,
    config: TrainConfig,
    steps: int,
    report: _Reporter,
    cancel: CancelToken,
) -> keras.callbacks.Callback:
    import keras

    from flower_model.optimizer import FusedAdam

    model.compile(
        optimizer=FusedAdam(config.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    progress = _progress_callback(report, cancel, config.epochs, steps)
    callbacks: list[keras.callbacks.Callback] = [progress]
    if config.patience:
        # Best weights are restored by `progress`, which ignores a stopped half epoch.
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
        )
    model.fit(
        train_data,
        epochs=config.epochs,
        validation_data=val_data,
        shuffle=False,  # the datasets shuffle themselves, seeded
        callbacks=callbacks,
        verbose=0,
    )
    return progress


def _versions() -> dict[str, str]:
    import keras
    import PIL
    import tensorflow as tf

    return {
        "flower_lens": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def train(
    dataset: Dataset,
    config: TrainConfig | None = None,
    on_event: Callable[[TrainEvent], None] | None = None,
    cancel: CancelToken | None = None,
    runs_root: Path | None = None,
) -> RunInfo:
    """Train the seed's model on a dataset and save it as a run; return the saved run.

    Raises TrainingCancelled if stopped before the first epoch completed (nothing is saved).
    """
    import keras

    config = config or TrainConfig()
    cancel = cancel or CancelToken()
    writer = RunWriter(runs_root)
    cancel.stop_file = writer.partial / STOP_FILE
    report = _Reporter(writer, on_event)
    started = time.time()
    try:
        report("start", message=f"{config.mode} training, weights {config.weights}")
        split = split_dataset(dataset, config.val_fraction, config.seed)
        train_records = records_for(dataset, split.train)
        val_records = records_for(dataset, split.val)
        y_train = np.array([r.label for r in train_records])
        y_val = np.array([r.label for r in val_records])

        report("phase", message="loading ResNet50")
        choice = resolve_weights(config.weights)
        backbone = build_backbone(choice, seed=config.seed)
        identity = weights_identity(backbone)
        keras.utils.set_random_seed(config.seed)
        networks = build_networks(backbone, len(dataset.class_names))

        if config.mode == "features":
            report("phase", message="preparing ResNet50 for feature extraction")
            extractor = Backbone.create(backbone, config.precision, identity)
            report("phase", message=f"extracting features ({extractor.precision})")
            records = train_records + val_records
            features, stats = extract_features(
                [dataset.path_of(r) for r in records],
                [r.sha256 for r in records],
                extractor,
                FeatureCache.for_backbone(extractor, choice.label),
                batch_size=max(config.batch_size, 32),
                progress=lambda done, total: report("extract", done=done, total=total),
                cancelled=cancel.is_set,
            )
            report(
                "phase",
                message=f"features: {stats.cached} from cache, {stats.computed} computed",
                done=stats.cached,
                total=stats.total,
            )
            x_train, x_val = features[: len(train_records)], features[len(train_records) :]
            report("phase", message="training the head")
            steps = math.ceil(len(x_train) / config.batch_size)
            progress = _fit(
                networks.head,
                feature_dataset(x_train, y_train, config.batch_size, shuffle_seed=config.seed),
                feature_dataset(x_val, y_val, config.batch_size),
                config,
                steps,
                report,
                cancel,
            )
            val_probabilities = networks.head.predict(x_val, verbose=0)
            feature_stats = asdict(stats)
        else:
            unfreeze_last_stage(backbone)

            def prepared(records: tuple, labels: np.ndarray, **kw: object) -> object:
                images = image_dataset(
                    [dataset.path_of(r) for r in records], labels, config.batch_size, **kw
                )
                return images.map(lambda x, y: (preprocess(x), y))

            train_data = prepared(train_records, y_train, shuffle_seed=config.seed, augment=True)
            val_data = prepared(val_records, y_val)
            report("phase", message="fine-tuning conv5 and the head on images")
            steps = math.ceil(len(train_records) / config.batch_size)
            progress = _fit(
                networks.classifier, train_data, val_data, config, steps, report, cancel
            )
            val_probabilities = networks.classifier.predict(val_data.map(lambda x, y: x), verbose=0)
            feature_stats = None

        if not progress.history["loss"]:
            raise TrainingCancelled("stopped before the first epoch completed; nothing was saved")
        evaluation = evaluate_predictions(
            y_val, val_probabilities, dataset.class_names, [r.path for r in val_records]
        )
        completed = len(progress.history["loss"])
        if progress.cancelled:
            stopped = "stopped by the user"
        elif completed < config.epochs:
            stopped = "early stopping"
        else:
            stopped = "all epochs"
        metadata = _metadata(
            writer.run_id,
            dataset,
            split,
            config,
            choice,
            identity,
            progress,
            evaluation,
            feature_stats,
            stopped,
            started,
        )
        report("phase", message="saving the run")
        info = writer.finish(networks.classifier, metadata)
        report(
            "end",
            message=f"saved run {info.run_id}",
            accuracy=evaluation.accuracy,
            val_loss=evaluation.loss,
        )
        return info
    except TrainingCancelled as exc:
        report("cancelled", message=str(exc))
        writer.discard()
        raise
    except Exception as exc:
        report("error", message=str(exc) or type(exc).__name__)
        writer.discard()
        raise


def _metadata(
    run_id: str,
    dataset: Dataset,
    split: Split,
    config: TrainConfig,
    choice: object,
    identity: str,
    progress: object,
    evaluation: object,
    feature_stats: dict | None,
    stopped: str,
    started: float,
) -> dict:
    return {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 2),
        "class_names": list(dataset.class_names),
        "input_size": [INPUT_SIZE, INPUT_SIZE, 3],
        "preprocessing": PREPROCESSING,
        "weights": {
            "kind": choice.kind,
            "label": choice.label,
            "transfer_learning": choice.transfer_learning,
            "file": str(choice.path) if choice.path else None,
            "identity": identity,
        },
        "config": {**asdict(config), "learning_rate": config.lr},
        "dataset": {
            "root": str(dataset.root),
            "fingerprint": dataset.fingerprint,
            "images": len(dataset.records),
            "classes": dataset.counts(),
            "skipped": len(dataset.skipped),
        },
        "split": split.to_json(),
        "features": feature_stats,
        "history": progress.history,
        "epochs_completed": len(progress.history["loss"]),
        "best_epoch": progress.best_epoch,
        "stopped": stopped,
        "evaluation": evaluation.to_json(),
        "versions": _versions(),
    }
