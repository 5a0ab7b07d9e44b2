"""Fit a small model on features held in memory: many training steps per TensorFlow call.

Keras' `fit` pays a fixed cost per step (the tf.data iterator, the metric objects, the
Python between calls) that dwarfs the head's 6 ms of arithmetic per 64-photo step on a
2-core CPU. Here the features sit in memory as tensors, and a compiled `tf.while_loop` runs
a chunk of steps per call: each step gathers its batch, runs the model with dropout,
and applies the optimizer, exactly as Keras' `train_step` does. Between chunks, the run's
Keras callbacks see the same calls as under `fit` (`on_train_batch_end` once per chunk, with
its last step), so progress, the best weights, early stopping and Stop work unchanged, and
Stop takes effect at the end of the current chunk.

Measured when it was written (2-core Xeon with AMX, 20 epochs of 3,200 + 800 features at
batch 64, tracing included): Keras' `fit` 4.9 s, with `steps_per_execution` 4.0 s, with XLA
10 s; this loop 2.6 s (`make bench`), the same weights to 1e-5 (tests/test_feature_fit.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# A chunk of steps takes about this long, so that Stop is never waited for much longer.
CHUNK_SECONDS = 0.1
# The first chunk's steps, before a chunk's time is known (its call also traces the loop).
FIRST_CHUNK_STEPS = 8


@dataclass(frozen=True)
class Rows:
    """Features and their labels, as the loop reads them."""

    features: np.ndarray  # (n, d) float32
    labels: np.ndarray  # (n,) integer classes

    def __len__(self) -> int:
        return len(self.labels)


def epoch_orders(rows: int, epochs: int, seed: int | None) -> list[np.ndarray]:
    """Return each epoch's row order: a fresh seeded shuffle per epoch, or without a seed
    the rows in order."""
    if seed is None:
        return [np.arange(rows)] * epochs
    generator = np.random.default_rng(seed)
    return [generator.permutation(rows) for _ in range(epochs)]


class _Compiled:
    """The model's compiled training chunk and evaluation, over tensors held once."""

    def __init__(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer, train: Rows, batch: int
    ) -> None:
        import keras
        import tensorflow as tf

        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        variables = model.trainable_variables
        optimizer.build(variables)
        x, y = tf.constant(train.features), tf.constant(train.labels.astype(np.int64))
        n = len(train)

        def hits(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
            guessed = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
            return tf.reduce_sum(tf.cast(tf.equal(guessed, labels), tf.float32))

        @tf.function(reduce_retracing=True)
        def steps(order: tf.Tensor, first: tf.Tensor, last: tf.Tensor) -> tuple:
            def step(i: tf.Tensor, loss_sum: tf.Tensor, correct: tf.Tensor) -> tuple:
                rows = order[i * batch : tf.minimum((i + 1) * batch, n)]
                features, labels = tf.gather(x, rows), tf.gather(y, rows)
                with tf.GradientTape() as tape:
                    probabilities = model(features, training=True)
                    loss = loss_fn(labels, probabilities)
                optimizer.apply(tape.gradient(loss, variables), variables)
                count = tf.cast(tf.shape(rows)[0], tf.float32)
                return i + 1, loss_sum + loss * count, correct + hits(labels, probabilities)

            zero = tf.constant(0.0)
            _, loss_sum, correct = tf.while_loop(lambda i, *_: i < last, step, (first, zero, zero))
            return loss_sum, correct

        @tf.function(reduce_retracing=True)
        def evaluate(features: tf.Tensor, labels: tf.Tensor) -> tuple:
            probabilities = model(features, training=False)
            per_photo = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            return tf.reduce_sum(per_photo), hits(labels, probabilities)

        self.steps, self.evaluate = steps, evaluate


def fit_features(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    train: Rows,
    val: Rows | None,
    epochs: int,
    batch_size: int,
    callbacks: list[keras.callbacks.Callback],
    shuffle_seed: int | None,
) -> dict[str, list[float]]:
    """Train a model on in-memory features with sparse categorical cross-entropy; return
    Keras' history of the epochs run (loss, accuracy and, with validation, val_loss and
    val_accuracy), the last one possibly cut short by a callback.

    Step by step, the arithmetic is that of `model.compile(optimizer,
    "sparse_categorical_crossentropy", ["accuracy"])` then `model.fit` on the same batches.
    """
    import keras
    import tensorflow as tf

    compiled = _Compiled(model, optimizer, train, batch_size)
    steps = math.ceil(len(train) / batch_size)
    val_x = tf.constant(val.features) if val is not None else None
    val_y = tf.constant(val.labels.astype(np.int64)) if val is not None else None
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    history: dict[str, list[float]] = {}
    model.stop_training = False
    chunk, traced = FIRST_CHUNK_STEPS, False
    callback_list.on_train_begin()
    for epoch, order in enumerate(epoch_orders(len(train), epochs, shuffle_seed)):
        callback_list.on_epoch_begin(epoch)
        order_tensor = tf.constant(order.astype(np.int32))
        loss_sum = correct = 0.0
        done = 0
        while done < steps and not model.stop_training:
            last = min(done + chunk, steps)
            started = time.perf_counter()
            chunk_loss, chunk_correct = compiled.steps(
                order_tensor, tf.constant(done), tf.constant(last)
            )
            loss_sum, correct = loss_sum + float(chunk_loss), correct + float(chunk_correct)
            seconds = time.perf_counter() - started
            if traced:  # the first call traces: its time says nothing of a step's
                chunk = max(1, round(CHUNK_SECONDS / (seconds / (last - done))))
            traced = True
            done = last
            seen = min(done * batch_size, len(train))
            logs = {"loss": loss_sum / seen, "accuracy": correct / seen}
            callback_list.on_train_batch_end(done - 1, logs)
        if val is not None:
            val_loss, val_correct = compiled.evaluate(val_x, val_y)
            logs["val_loss"] = float(val_loss) / len(val)
            logs["val_accuracy"] = float(val_correct) / len(val)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history
