"""The classifier head (the seed's dense layers) and the full model around ResNet50."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flower_model.backbone import FEATURE_DIM, INPUT_SHAPE

if TYPE_CHECKING:
    import keras

HIDDEN_UNITS = (256, 128, 64)
DROPOUT_RATE = 0.2


@dataclass(frozen=True)
class Networks:
    """Two views of one set of layers: the full classifier and its head.

    The head's layers are the classifier's layers, so training the head on cached
    features trains the classifier that is saved and used for photos.
    """

    classifier: keras.Model  # 224×224×3 image batch -> class probabilities
    head: keras.Model  # 2048-d pooled features -> class probabilities


def head_layers(num_classes: int) -> list[keras.layers.Layer]:
    """Return the seed's head: Dense 256/128/64 ReLU, each followed by Dropout 0.2, then softmax."""
    import keras

    layers: list[keras.layers.Layer] = []
    for units in HIDDEN_UNITS:
        layers.append(keras.layers.Dense(units, activation="relu", name=f"dense_{units}"))
        layers.append(keras.layers.Dropout(DROPOUT_RATE, name=f"dropout_{units}"))
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="probabilities"))
    return layers


def _stack(inputs: keras.KerasTensor, layers: list[keras.layers.Layer]) -> keras.KerasTensor:
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


def build_networks(backbone: keras.Model, num_classes: int) -> Networks:
    """Return the seed's model: image -> frozen ResNet50 -> global average pooling -> head."""
    import keras

    if num_classes < 2:
        raise ValueError(f"a classifier needs at least two classes, not {num_classes}")
    image = keras.Input(shape=INPUT_SHAPE, name="image")
    # training=False keeps BatchNorm in inference mode, even when fine-tuning unfreezes layers.
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone(image, training=False))
    layers = head_layers(num_classes)
    classifier = keras.Model(image, _stack(pooled, layers), name="flower_classifier")
    features = keras.Input(shape=(FEATURE_DIM,), name="features")
    head = keras.Model(features, _stack(features, layers), name="flower_head")
    return Networks(classifier=classifier, head=head)


def networks_of(classifier: keras.Model) -> Networks:
    """Return the two views of a classifier loaded from a run."""
    import keras

    pooling = classifier.get_layer("avg_pool")
    index = classifier.layers.index(pooling)
    features = keras.Input(shape=(FEATURE_DIM,), name="features")
    head = keras.Model(features, _stack(features, classifier.layers[index + 1 :]))
    return Networks(classifier=classifier, head=head)


def backbone_of(classifier: keras.Model) -> keras.Model:
    """Return the ResNet50 inside a classifier."""
    return classifier.get_layer("resnet50")
