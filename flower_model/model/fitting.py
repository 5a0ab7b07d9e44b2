"""Fitting a model with a run's callbacks: the head on features held in memory (many steps
per TensorFlow call), or a whole model on photos through Keras' own `fit`; what a fit did."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import TrainingCancelled, TrainingError
from flower_model.core.events import HISTORY_KEYS, CancelToken, OnEvent
from flower_model.model.config import TrainConfig
from flower_model.model.head import FIRST_DENSE, build_head
from flower_model.model.scaling import FeatureRows, shifted_and_scaled, standardisation

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

STOPPED_BY_USER = "stopped by the user"

# (rows of features, their labels); the rows may be a Selection of a larger array's.
Features = tuple[FeatureRows, np.ndarray]


@dataclass(frozen=True)
class Fit:
    """What one fit did: the curves of its completed epochs, the best epoch (whose weights the
    model holds afterwards), and why it stopped."""

    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    stopped: str  # "all epochs", "early stopping" or "stopped by the user"
    seconds: float  # compile, tracing and every epoch
    standardised: bool = False  # trained on standardised features (folded in since)
    fine_tuned_after: int | None = None  # epochs of the head alone before fine-tuning began

    @property
    def epochs_completed(self) -> int:
        """Return how many epochs ran to the end."""
        return len(self.history["loss"])


def fit_head(
    head: keras.Model,
    train: Features,
    val: Features | None,
    config: TrainConfig,
    on_event: OnEvent | None = None,
    cancel: CancelToken | None = None,
) -> Fit:
    """Fit a head on features and labels; return the fit, the head left at its best epoch.

    Without validation features, nothing stops it early and the best epoch is the one with
    the lowest training loss.

    The head trains on features standardised with the training rows' mean and deviation,
    and the standardisation is then folded into its first layer: afterwards it takes raw
    features, exactly the seed's head, with the same probabilities.
    """
    import keras
    import tensorflow as tf

    from flower_model.model.feature_fit import Rows, fit_features
    from flower_model.model.fold import fold_standardisation

    mean, std = standardisation(train[0])
    shift, scale = mean.astype(np.float32), (1.0 / std).astype(np.float32)

    def standardised(part: Features) -> Rows:
        # One float32 copy, made a block at a time, then the loop's tensor of it: the copy
        # is gone once the tensor is made (100,000 photos: 0.8 GB each, measured; a float64
        # copy of 4,000 photos' features cost 0.1 s).
        return Rows(tf.constant(shifted_and_scaled(part[0], shift, scale)), part[1])

    train_rows = standardised(train)
    val_rows = standardised(val) if val is not None else None

    def fit(callbacks: list[keras.callbacks.Callback]) -> dict[str, list[float]]:
        return fit_features(
            head,
            keras.optimizers.Adam(config.learning_rate),
            train_rows,
            val_rows,
            config.epochs,
            config.batch_size,
            callbacks,
            shuffle_seed=config.seed,
        )

    steps = math.ceil(len(train[0]) / config.batch_size)
    result = fit_with_callbacks(fit, steps, val is not None, config, on_event, cancel)
    fold_standardisation(head.get_layer(FIRST_DENSE), mean, std)
    return replace(result, standardised=True)


def warm_up(classes: int = 5) -> None:
    """Fit the seed's head of `classes` classes for one epoch on a few random features, so
    that this process's next training of that shape finds its loop traced and TensorFlow's
    kernels ready (the app's worker does it while it waits for its first job)."""
    from flower_model.model.backbone import FEATURE_DIM

    rows = max(64, 2 * classes)
    features = np.random.default_rng(0).normal(size=(rows, FEATURE_DIM)).astype(np.float32)
    labels = np.arange(rows) % classes
    config = TrainConfig(epochs=1, weights="none", patience=0)
    fit_head(build_head(classes), (features, labels), (features, labels), config)


def fit_model(
    model: keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset,
    steps: int,
    config: TrainConfig,
    learning_rate: float,
    on_event: OnEvent | None,
    cancel: CancelToken | None,
) -> Fit:
    """Compile and fit a model on photos with the run's callbacks; return what the fit did."""
    import keras

    def fit(callbacks: list[keras.callbacks.Callback]) -> dict[str, list[float]]:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model.fit(
            train_data,
            epochs=config.epochs,
            validation_data=val_data,
            shuffle=False,  # the datasets shuffle themselves, seeded
            callbacks=callbacks,
            verbose=0,
        ).history

    return fit_with_callbacks(fit, steps, True, config, on_event, cancel)


def fit_with_callbacks(
    fit: Callable[[list[keras.callbacks.Callback]], dict[str, list[float]]],
    steps: int,
    validated: bool,
    config: TrainConfig,
    on_event: OnEvent | None,
    cancel: CancelToken | None,
) -> Fit:
    """Run a fit with the run's callbacks (progress, best weights, Stop, early stopping only
    with validation); return what it did."""
    from flower_model.model.callbacks import training_callbacks

    callbacks = training_callbacks(
        on_event or (lambda event: None),
        cancel or CancelToken(),
        config.epochs,
        steps,
        config.patience if validated else 0,
        monitor="val_loss" if validated else "loss",
    )
    start = time.perf_counter()
    logs = fit(callbacks.ordered)
    # Keras' history also holds an epoch a stop request cut short; it was not completed.
    completed = len(logs.get("loss", [])) - int(callbacks.stop.cut_short)
    if completed < 1:
        raise TrainingCancelled("stopped before the first epoch completed; nothing was saved")
    if callbacks.best.best_epoch == 0:
        raise TrainingError(
            "the loss was never a finite number: training diverged; try a lower learning rate"
        )
    history = {key: [float(v) for v in logs.get(key, [])[:completed]] for key in HISTORY_KEYS}
    if callbacks.stop.requested:
        stopped = STOPPED_BY_USER
    elif completed < config.epochs:
        stopped = "early stopping"
    else:
        stopped = "all epochs"
    return Fit(history, callbacks.best.best_epoch, stopped, time.perf_counter() - start)
