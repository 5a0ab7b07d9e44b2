"""FusedAdam: Keras' Adam under the name runs saved before the public-API loop refer to."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np

from flower_model.model.optimizer import FusedAdam


def small_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))


def batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype("float32")
    y = rng.integers(0, 3, 64)
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


def test_fused_adam_is_keras_adam_step_for_step() -> None:
    reference, renamed = small_model(), small_model()
    renamed.set_weights(reference.get_weights())
    reference.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    renamed.compile(optimizer=FusedAdam(1e-2), loss="sparse_categorical_crossentropy")
    for step in range(12):
        x, y = batches()[step % 4]
        reference.train_on_batch(x, y)
        renamed.train_on_batch(x, y)
    for ref, got in zip(reference.get_weights(), renamed.get_weights(), strict=True):
        np.testing.assert_array_equal(got, ref)
    assert int(renamed.optimizer.iterations) == 12


def test_a_model_saved_compiled_with_fused_adam_loads_compiled(tmp_path: Path) -> None:
    # What a fine-tuned run saved before: its compile configuration names FusedAdam.
    model = small_model()
    model.compile(optimizer=FusedAdam(3e-3), loss="sparse_categorical_crossentropy")
    for x, y in batches():
        model.train_on_batch(x, y)
    path = tmp_path / "model.keras"
    model.save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert config["compile_config"]["optimizer"]["registered_name"] == "flower_lens>FusedAdam"

    loaded = keras.models.load_model(path)  # compile=True: the optimizer is rebuilt
    assert isinstance(loaded.optimizer, FusedAdam)
    assert float(loaded.optimizer.learning_rate) == np.float32(3e-3)
    # Its state too: the step count and each weight's momentum and velocity.
    assert int(loaded.optimizer.iterations) == 4
    for got, want in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # And it trains on from there as the saved model would have.
    x, y = batches()[0]
    loaded.train_on_batch(x, y)
    model.train_on_batch(x, y)
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
