"""The classifier head (the seed's dense layers) and the full model around ResNet50."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flower_model.model.backbone import FEATURE_DIM, POOLING_LAYER, RESNET_NAME, pooled_resnet

if TYPE_CHECKING:
    import keras

HIDDEN_UNITS = (256, 128, 64)
DROPOUT_RATE = 0.2
# The head's first layer: where the feature standardisation is folded in before saving.
FIRST_DENSE = f"dense_{HIDDEN_UNITS[0]}"
# The softmax layer: one unit per class.
OUTPUT_LAYER = "probabilities"
# The head's input: a photo's 2048 pooled features.
HEAD_INPUT = "features"


@dataclass(frozen=True)
class Networks:
    """Two views of one set of layers: the full classifier and its head.

    The head's layers are the classifier's layers, so training the head on cached
    features trains the classifier that is saved and used for photos.
    """

    classifier: keras.Model  # 224×224×3 image batch -> class probabilities
    head: keras.Model  # 2048-d pooled features -> class probabilities

    @property
    def resnet(self) -> keras.Model:
        """Return the ResNet50 inside the classifier."""
        return self.classifier.get_layer(RESNET_NAME)


def head_layers(
    num_classes: int, seed: int = 42, dropout: float = DROPOUT_RATE
) -> list[keras.layers.Layer]:
    """Return the seed's head: Dense 256/128/64 ReLU, each followed by Dropout 0.2, then softmax
    (another dropout rate leaves the seed's model: Tune may suggest one).

    Every initialiser and dropout draws from its own seed, not from Keras' process-wide
    generator, so the same seed gives the same head in any thread of a server.
    """
    import keras

    layers: list[keras.layers.Layer] = []
    for i, units in enumerate(HIDDEN_UNITS):
        init = keras.initializers.GlorotUniform(seed=seed + i)
        layers.append(
            keras.layers.Dense(
                units, activation="relu", kernel_initializer=init, name=f"dense_{units}"
            )
        )
        layers.append(keras.layers.Dropout(dropout, seed=seed + i, name=f"dropout_{units}"))
    init = keras.initializers.GlorotUniform(seed=seed + len(HIDDEN_UNITS))
    layers.append(
        keras.layers.Dense(
            num_classes, activation="softmax", kernel_initializer=init, name=OUTPUT_LAYER
        )
    )
    return layers


def _stack(inputs: keras.KerasTensor, layers: list[keras.layers.Layer]) -> keras.KerasTensor:
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


def _head_on(layers: list[keras.layers.Layer]) -> keras.Model:
    import keras

    features = keras.Input(shape=(FEATURE_DIM,), name=HEAD_INPUT)
    return keras.Model(features, _stack(features, layers), name="flower_head")


def build_head(num_classes: int, seed: int = 42, dropout: float = DROPOUT_RATE) -> keras.Model:
    """Return the seed's head alone: 2048-d features -> class probabilities."""
    return _head_on(head_layers(num_classes, seed, dropout))


def build_networks(resnet: keras.Model, num_classes: int, seed: int = 42) -> Networks:
    """Return the seed's model: image -> frozen ResNet50 -> global average pooling -> head."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least two classes, not {num_classes}")
    return classifier_around(resnet, build_head(num_classes, seed))


def classifier_around(resnet: keras.Model, head: keras.Model) -> Networks:
    """Return image -> ResNet50 -> global average pooling -> this head, the head's layers
    shared (a head trained on features, or one saved alone, becomes the full classifier)."""
    import keras

    body = pooled_resnet(resnet)
    layers = head.layers[1:]  # after its input
    classifier = keras.Model(body.input, _stack(body.output, layers), name="flower_classifier")
    return Networks(classifier=classifier, head=head)


def networks_of(classifier: keras.Model) -> Networks:
    """Return the two views of a classifier loaded from a run."""
    index = classifier.layers.index(classifier.get_layer(POOLING_LAYER))
    return Networks(classifier=classifier, head=_head_on(classifier.layers[index + 1 :]))
