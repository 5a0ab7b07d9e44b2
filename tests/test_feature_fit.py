"""The head's fit on in-memory features: Keras' arithmetic, chunks of compiled steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flower_model import feature_fit
from flower_model.feature_fit import Rows, epoch_orders, fit_features
from flower_model.head import build_head
from flower_model.optimizer import FusedAdam

KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def separable(count: int, seed: int = 0) -> Rows:
    """Return standardised-looking features whose class shows in its own 400 columns."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 5
    features = rng.normal(0.0, 1.0, (count, 2048)).astype(np.float32)
    features[:, :2000] += np.repeat(np.eye(5, dtype=np.float32)[labels], 400, axis=1)
    return Rows(features, labels)


def keras_fit(train: Rows, val: Rows, epochs: int, batch: int) -> tuple[keras.Model, dict]:
    """Return a fresh head fitted by Keras' own compile and fit, on unshuffled batches."""
    import tensorflow as tf

    head = build_head(5)
    head.compile(
        optimizer=FusedAdam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )

    def batches(rows: Rows) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((rows.features, rows.labels)).batch(batch)

    history = head.fit(
        batches(train), epochs=epochs, validation_data=batches(val), shuffle=False, verbose=0
    ).history
    return head, history


def test_the_fit_is_keras_fit_step_by_step() -> None:
    # 70 rows at batch 16: the last batch of every epoch is partial, as in a real split.
    train, val = separable(70), separable(30, seed=1)
    reference, expected = keras_fit(train, val, epochs=3, batch=16)
    head = build_head(5)
    optimizer = FusedAdam(1e-3)
    history = fit_features(head, optimizer, train, val, 3, 16, [], shuffle_seed=None)
    for key in KEYS:
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, atol=1e-6)
    for got, want in zip(head.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations) == 3 * 5
    assert history["val_accuracy"][-1] > 0.6  # it learned, so the comparison means something


def test_chunk_sizes_do_not_change_the_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    train, val = separable(100), separable(20, seed=1)

    def fitted() -> list[np.ndarray]:
        head = build_head(5)
        fit_features(head, FusedAdam(1e-3), train, val, 2, 8, [], shuffle_seed=3)
        return head.get_weights()

    whole = fitted()
    monkeypatch.setattr(feature_fit, "FIRST_CHUNK_STEPS", 1)
    monkeypatch.setattr(feature_fit, "CHUNK_SECONDS", 0.0)  # one step per call
    for got, want in zip(fitted(), whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_seeded_orders_reshuffle_every_epoch_and_repeat() -> None:
    orders = epoch_orders(50, 3, seed=5)
    assert all(sorted(order.tolist()) == list(range(50)) for order in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], np.arange(50))
    for again, first in zip(epoch_orders(50, 3, seed=5), orders, strict=True):
        np.testing.assert_array_equal(again, first)
    assert all(np.array_equal(order, np.arange(4)) for order in epoch_orders(4, 2, None))


class StopAtFirstReport(keras.callbacks.Callback):
    """Stops the fit the first time a chunk ends, as Stop does, and keeps what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.epochs_ended: list[dict] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.batches.append(batch)
        self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs_ended.append(dict(logs or {}))


def test_a_stop_takes_effect_when_the_current_chunk_ends() -> None:
    train = separable(640)
    optimizer = FusedAdam(1e-3)
    stop = StopAtFirstReport()
    history = fit_features(build_head(5), optimizer, train, None, 5, 16, [stop], shuffle_seed=1)
    # 40 steps an epoch; the first chunk is FIRST_CHUNK_STEPS, and nothing ran after it.
    assert int(optimizer.iterations) == feature_fit.FIRST_CHUNK_STEPS
    assert stop.batches == [feature_fit.FIRST_CHUNK_STEPS - 1]
    assert len(history["loss"]) == 1 and len(stop.epochs_ended) == 1
    assert "val_loss" not in history


def test_progress_is_reported_per_chunk_with_running_means() -> None:
    train = separable(200)
    seen: list[tuple[int, dict]] = []
    report = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append((batch, dict(logs)))
    )
    history = fit_features(build_head(5), FusedAdam(1e-3), train, None, 1, 10, [report], None)
    assert seen[0][0] == feature_fit.FIRST_CHUNK_STEPS - 1 and seen[-1][0] == 19
    assert [b for b, _ in seen] == sorted({b for b, _ in seen})  # each chunk once, in order
    assert seen[-1][1]["loss"] == pytest.approx(history["loss"][0])
    assert seen[-1][1]["accuracy"] == pytest.approx(history["accuracy"][0])
