"""FusedAdam: Keras' Adam arithmetic in TensorFlow's fused kernel."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flower_model.model.optimizer import FusedAdam


def small_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))


def test_fused_adam_follows_keras_adam_step_for_step() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype("float32")
    y = rng.integers(0, 3, 64)
    reference, fused = small_model(), small_model()
    fused.set_weights(reference.get_weights())
    reference.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    fused.compile(optimizer=FusedAdam(1e-2), loss="sparse_categorical_crossentropy")
    start = [w.copy() for w in fused.get_weights()]
    for step in range(25):
        batch = slice(step % 4 * 16, step % 4 * 16 + 16)
        reference.train_on_batch(x[batch], y[batch])
        fused.train_on_batch(x[batch], y[batch])
    for ref, got, before in zip(reference.get_weights(), fused.get_weights(), start, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        assert not np.allclose(got, before)  # it did train
    assert int(fused.optimizer.iterations) == 25


def test_fused_adam_refuses_amsgrad() -> None:
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(1e-3, amsgrad=True)
