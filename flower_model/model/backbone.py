"""ResNet50: its weights, how it is built, and how photos enter it (the one preprocessing).

Keras is imported inside the functions that need it, so that `weights_status` can be
asked by a page that must not load TensorFlow. Throughout the project `resnet` names the
Keras model built here; the fast feature path around it is `extractor.FeatureExtractor`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core import workspace
from flower_model.core.errors import WeightsError

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

INPUT_SIZE = 224
INPUT_SHAPE = (INPUT_SIZE, INPUT_SIZE, 3)
FEATURE_DIM = 2048
# Recorded with every run and part of every feature-cache key: change it when preprocessing changes.
PREPROCESSING = (
    "RGB resized to 224x224 (Pillow bilinear, EXIF-upright, alpha on white) -> "
    "keras.applications.resnet50.preprocess_input (caffe: RGB to BGR, ImageNet means subtracted)"
)
WEIGHTS_ENV = "FLOWER_LENS_WEIGHTS"
WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{WEIGHTS_FILE}"
# The name Keras gives the ResNet50 model, which is also its layer name inside the classifier.
RESNET_NAME = "resnet50"
# Layer names of image -> ResNet50 -> pooling, the same in the saved classifier.
IMAGE_INPUT = "image"
POOLING_LAYER = "avg_pool"
# The last residual stage: what fine-tuning unfreezes.
LAST_STAGE_PREFIX = "conv5_"
# The last 7×7 feature maps: where Grad-CAM looks by default.
LAST_CONV_LAYER = "conv5_block3_out"
NO_TRANSFER_LABEL = "none (no transfer learning)"
# Workspace file: the identity of each weights source built before (`known_identity`).
IDENTITIES_FILE = "weights-identities.json"


@dataclass(frozen=True)
class WeightsChoice:
    """Which ResNet50 weights to use: ImageNet from a file or Keras' download, or none."""

    kind: str  # "imagenet" or "none"
    path: Path | None = None  # the ImageNet file, when one was found

    @property
    def label(self) -> str:
        """Return how results trained with these weights are labelled."""
        return "ImageNet" if self.kind == "imagenet" else NO_TRANSFER_LABEL

    @property
    def transfer_learning(self) -> bool:
        """Return whether these weights carry ImageNet knowledge."""
        return self.kind == "imagenet"


@dataclass(frozen=True)
class WeightsStatus:
    """Whether ImageNet weights are on this machine, for a status line."""

    available: bool
    path: Path | None
    expected_path: Path
    message: str


def keras_cache_path() -> Path:
    """Return where Keras keeps (and looks for) the downloaded ResNet50 weights."""
    if "KERAS_HOME" in os.environ:
        base = Path(os.environ["KERAS_HOME"])
    else:
        home = Path.home()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    return base / "models" / WEIGHTS_FILE


def how_to_get_weights() -> str:
    """Return one sentence on where the ImageNet weights file goes."""
    return (
        f"download {WEIGHTS_FILE} (94.7 MB) from {WEIGHTS_URL} and put it at "
        f"{keras_cache_path()}, or name it with --weights PATH or ${WEIGHTS_ENV}; "
        "or train with weights 'none' (no transfer learning)"
    )


def resolve_weights(spec: str | Path | None = "imagenet") -> WeightsChoice:
    """Return the weights to use for 'imagenet' (default), 'none', or a weights file path.

    This is the one place a weights string is read. 'imagenet' means, in order: the file or
    'none' that $FLOWER_LENS_WEIGHTS names, Keras' cache file, or Keras' download.
    """
    text = str(spec).strip() if spec is not None else "imagenet"
    if text.lower() == "none":
        return WeightsChoice("none")
    if text.lower() not in ("", "imagenet", "auto"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"the weights file {path} does not exist; {how_to_get_weights()}")
        return WeightsChoice("imagenet", path)
    named = os.environ.get(WEIGHTS_ENV, "").strip()
    if named.lower() == "none":
        return WeightsChoice("none")
    if named and named.lower() != "imagenet":
        path = Path(named).expanduser()
        if not path.is_file():
            raise WeightsError(f"${WEIGHTS_ENV} names {path}, which is not a file")
        return WeightsChoice("imagenet", path)
    cached = keras_cache_path()
    return WeightsChoice("imagenet", cached if cached.is_file() else None)


def weights_status() -> WeightsStatus:
    """Return whether ImageNet weights are present, without loading TensorFlow."""
    expected = keras_cache_path()
    try:
        choice = resolve_weights("imagenet")
    except WeightsError as exc:
        return WeightsStatus(False, None, expected, str(exc))
    if choice.kind == "none":
        return WeightsStatus(
            False, None, expected, f"${WEIGHTS_ENV}=none: ResNet50 starts from random weights"
        )
    if choice.path is not None:
        return WeightsStatus(
            True, choice.path, expected, f"ImageNet weights found at {choice.path}"
        )
    return WeightsStatus(
        False,
        None,
        expected,
        "ImageNet weights are not on this machine; Keras downloads them on first use when "
        f"online. Offline: {how_to_get_weights()}",
    )


def default_weights() -> str:
    """Return the weights a page offers first: 'imagenet' when the file is here, else 'none'."""
    return "imagenet" if weights_status().available else "none"


def _seeded_kernels(resnet: keras.Model, seed: int) -> None:
    """Give every convolution Keras' Glorot-uniform start drawn from `seed`, and only from it.

    Keras would draw from its process-wide generator, which only a global reseed makes
    repeatable; these draws touch no global state. Biases and BatchNorm start at constants.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in resnet.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, fan_in, fan_out = layer.kernel.shape
            limit = np.sqrt(6.0 / ((fan_in + fan_out) * height * width))
            layer.kernel.assign(rng.uniform(-limit, limit, layer.kernel.shape).astype(np.float32))


def build_resnet50(choice: WeightsChoice, seed: int = 42) -> keras.Model:
    """Return ResNet50 without its top, frozen, with the chosen weights.

    With no weights the start is random but the same for the same seed, so cached
    features of random weights stay valid from one run to the next.
    """
    import keras

    weights = None
    if choice.kind != "none":
        weights = str(choice.path) if choice.path is not None else "imagenet"
    try:
        resnet = keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=INPUT_SHAPE
        )
    except Exception as exc:  # Keras raises plain Exception for a failed download
        if choice.path is not None:
            raise WeightsError(
                f"cannot load ResNet50 weights from {choice.path} ({exc}); the file must be "
                f"Keras' {WEIGHTS_FILE}"
            ) from exc
        raise WeightsError(
            f"ImageNet weights for ResNet50 could not be downloaded ({str(exc)[:160]}); "
            f"{how_to_get_weights()}"
        ) from exc
    if weights is None:
        _seeded_kernels(resnet, seed)
    resnet.trainable = False
    return resnet


def weights_identity(model: keras.Model) -> str:
    """Return a short hash of a model's weight values: what feature-cache keys are made of."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


def weights_source(choice: WeightsChoice, seed: int) -> str | None:
    """Return what decides the values of the ResNet50 that `build_resnet50(choice, seed)`
    builds, without building it: the seed and the Keras version for random weights, the
    weights file's path, size and modification time for ImageNet ones; None while the
    ImageNet file is still to be downloaded."""
    from importlib.metadata import version

    if choice.kind == "none":
        return f"random|seed {seed}|keras {version('keras')}"
    if choice.path is None:
        return None
    try:
        stat = choice.path.stat()
    except OSError:
        return None
    return f"file|{choice.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def known_identity(choice: WeightsChoice, seed: int) -> str | None:
    """Return the `weights_identity` of the ResNet50 these weights would build, when a
    build of them was hashed before, else None (then build it and `identity_of` it)."""
    source = weights_source(choice, seed)
    value = workspace.recalled(IDENTITIES_FILE, source) if source is not None else None
    return value if isinstance(value, str) else None


def identity_of(resnet: keras.Model, choice: WeightsChoice, seed: int) -> str:
    """Return a ResNet50's `weights_identity`, and remember it for `known_identity`."""
    identity = weights_identity(resnet)
    source = weights_source(choice, seed)
    if source is not None:
        workspace.remember(IDENTITIES_FILE, source, identity)
    return identity


def preprocess(images: tf.Tensor) -> tf.Tensor:
    """Return ResNet50's preprocessing of a uint8 or float batch of 224×224 RGB images."""
    import keras
    import tensorflow as tf

    return keras.applications.resnet50.preprocess_input(tf.cast(images, tf.float32))


def pooled_resnet(resnet: keras.Model) -> keras.Model:
    """Return image -> ResNet50 -> global average pooling: the 2048-d features of a photo."""
    import keras

    image = keras.Input(shape=INPUT_SHAPE, name=IMAGE_INPUT)
    # training=False keeps BatchNorm in inference mode, even when fine-tuning unfreezes layers.
    features = resnet(image, training=False)
    return keras.Model(image, keras.layers.GlobalAveragePooling2D(name=POOLING_LAYER)(features))


def photo_function(
    fn: Callable[..., tf.Tensor], *extra: tf.TensorSpec, jit_compile: bool = False
) -> Callable[..., tf.Tensor]:
    """Return `fn` compiled once for uint8 batches of 224×224 RGB photos, given to it
    preprocessed (and any `extra` arguments after them): how every photo enters a network."""
    import tensorflow as tf

    photos = tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.uint8)
    return tf.function(
        lambda images, *args: fn(preprocess(images), *args),
        input_signature=[photos, *extra],
        jit_compile=jit_compile,
    )


def unfreeze_last_stage(resnet: keras.Model) -> None:
    """Make the last residual stage trainable, keeping every BatchNorm layer frozen."""
    import keras

    resnet.trainable = True
    for layer in resnet.layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.startswith(LAST_STAGE_PREFIX) and not is_batch_norm
