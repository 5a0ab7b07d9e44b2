"""The model is the seed's architecture, layer by layer."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from flower_model.model.backbone import pooled_resnet
from flower_model.model.head import build_networks, networks_of


def test_architecture_matches_the_seed_layer_by_layer(resnet) -> None:
    model = build_networks(resnet, num_classes=5).classifier
    layers = model.layers
    assert [type(layer).__name__ for layer in layers] == [
        "InputLayer",
        "Functional",
        "GlobalAveragePooling2D",
        "Dense",
        "Dropout",
        "Dense",
        "Dropout",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert tuple(model.input.shape) == (None, 224, 224, 3)
    base = layers[1]
    assert base.name == "resnet50" and not base.trainable
    assert tuple(base.output.shape) == (None, 7, 7, 2048)  # include_top=False, no pooling
    assert all(not w.trainable for w in base.weights)
    dense = [(x.units, x.activation.__name__) for x in layers if isinstance(x, keras.layers.Dense)]
    assert dense == [(256, "relu"), (128, "relu"), (64, "relu"), (5, "softmax")]
    assert [x.rate for x in layers if isinstance(x, keras.layers.Dropout)] == [0.2, 0.2, 0.2]
    head_params = (2048 * 256 + 256) + (256 * 128 + 128) + (128 * 64 + 64) + (64 * 5 + 5)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == head_params
    assert tuple(model.output.shape) == (None, 5)


def test_head_and_classifier_share_weights(resnet) -> None:
    networks = build_networks(resnet, num_classes=3)
    features = np.random.default_rng(0).normal(size=(4, 2048)).astype("float32")
    before = networks.head(features).numpy()
    dense = networks.classifier.get_layer("dense_256")
    kernel = dense.kernel.numpy()
    dense.kernel.assign(kernel * 2)
    assert not np.allclose(networks.head(features).numpy(), before)
    assert dense in networks.head.layers


def test_saved_classifier_gives_back_backbone_and_head(resnet, tmp_path: Path) -> None:
    networks = build_networks(resnet, num_classes=4)
    path = tmp_path / "model.keras"
    networks.classifier.save(path)
    loaded = networks_of(keras.models.load_model(path, compile=False))
    images = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    features = pooled_resnet(loaded.resnet)(images).numpy()
    expected = pooled_resnet(resnet)(images).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        loaded.head(features).numpy(), loaded.classifier(images).numpy(), rtol=1e-4, atol=1e-5
    )
