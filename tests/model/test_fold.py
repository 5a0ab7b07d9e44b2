"""Folding: BatchNorm into the convolutions and the standardisation into the head, exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flower_model.data.images import load_rgb
from flower_model.model.backbone import INPUT_SIZE, preprocess
from flower_model.model.fold import fold_batch_norm, fold_standardisation


@pytest.fixture(scope="module")
def photos(sample) -> np.ndarray:
    step = len(sample.records) // 6
    return np.stack(
        [load_rgb(sample.path_of(r), size=INPUT_SIZE) for r in sample.records[::step][:6]]
    )


def test_folded_network_has_no_batch_norm_and_computes_the_same(resnet, photos) -> None:
    folded = fold_batch_norm(resnet)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in resnet.layers) == 53
    expected = resnet(preprocess(photos), training=False).numpy()
    got = folded(preprocess(photos), training=False).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # The original is untouched: its BatchNorm layers still hold their statistics.
    assert resnet.get_layer("conv1_bn").moving_variance.numpy().min() > 0


def test_networks_that_folding_would_change_are_refused() -> None:
    def conv_net(*, activation: str = "linear", shared: bool = False) -> keras.Model:
        image = keras.Input((8, 8, 3))
        conv = keras.layers.Conv2D(4, 3, activation=activation)(image)
        normed = keras.layers.BatchNormalization()(conv)
        out = keras.layers.Add()([normed, conv]) if shared else normed
        return keras.Model(image, out)

    folded = fold_batch_norm(conv_net())
    assert not any(isinstance(x, keras.layers.BatchNormalization) for x in folded.layers)
    with pytest.raises(ValueError, match="activation"):
        fold_batch_norm(conv_net(activation="relu"))
    with pytest.raises(ValueError, match="feeds more than"):
        fold_batch_norm(conv_net(shared=True))
    image = keras.Input((8, 8, 3))
    dense = keras.layers.BatchNormalization()(keras.layers.Dense(4)(image))
    with pytest.raises(ValueError, match="does not follow a convolution"):
        fold_batch_norm(keras.Model(image, dense))


def test_folded_standardisation_gives_the_same_outputs_on_raw_inputs() -> None:
    rng = np.random.default_rng(0)
    # Random ResNet50 features look like this: large shared offsets, a few constant columns.
    raw = rng.normal(50.0, 4.0, (32, 16)) * rng.uniform(0.1, 10.0, 16)
    raw[:, 3] = 7.0
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    std[std < 1e-6] = 1.0
    dense = keras.layers.Dense(8, activation="relu")
    dense.build((None, 16))
    dense.set_weights([rng.normal(size=(16, 8)), rng.normal(size=8)])
    expected = dense(((raw - mean) / std).astype("float32")).numpy()
    fold_standardisation(dense, mean, std)
    got = dense(raw.astype("float32")).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    with pytest.raises(ValueError, match="positive"):
        fold_standardisation(dense, mean, np.zeros(16))
