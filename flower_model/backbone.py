"""ResNet50, its ImageNet weights, and its preprocessing (the one preprocessing function).

Keras is imported inside the functions that need it, so that `weights_status` can be
asked by a page that must not load TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flower_model.errors import WeightsError

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
# The last residual stage: what fine-tuning unfreezes.
LAST_STAGE_PREFIX = "conv5_"
LAST_CONV_LAYER = "conv5_block3_out"
NO_TRANSFER_LABEL = "none (no transfer learning)"


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


def _local_weights_file() -> Path | None:
    named = os.environ.get(WEIGHTS_ENV)
    if named and named.lower() not in ("imagenet", "none"):
        path = Path(named).expanduser()
        if not path.is_file():
            raise WeightsError(f"${WEIGHTS_ENV} names {path}, which is not a file")
        return path
    cached = keras_cache_path()
    return cached if cached.is_file() else None


def weights_status() -> WeightsStatus:
    """Return whether ImageNet weights are present, without loading TensorFlow."""
    expected = keras_cache_path()
    try:
        found = _local_weights_file()
    except WeightsError as exc:
        return WeightsStatus(False, None, expected, str(exc))
    if found is not None:
        return WeightsStatus(True, found, expected, f"ImageNet weights found at {found}")
    return WeightsStatus(
        False,
        None,
        expected,
        "ImageNet weights are not on this machine; Keras downloads them on first use when "
        f"online. Offline: {how_to_get_weights()}",
    )


def resolve_weights(spec: str | Path | None = "imagenet") -> WeightsChoice:
    """Return the weights to use for 'imagenet' (default), 'none', or a weights file path."""
    text = str(spec).strip() if spec is not None else "imagenet"
    if text.lower() in ("", "imagenet", "auto"):
        env = os.environ.get(WEIGHTS_ENV, "").strip().lower()
        if env == "none":
            return WeightsChoice("none")
        return WeightsChoice("imagenet", _local_weights_file())
    if text.lower() == "none":
        return WeightsChoice("none")
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsError(f"the weights file {path} does not exist; {how_to_get_weights()}")
    return WeightsChoice("imagenet", path)


def build_backbone(choice: WeightsChoice, seed: int = 42) -> keras.Model:
    """Return ResNet50 without its top, frozen, with the chosen weights."""
    import keras

    if choice.kind == "none":
        # Random initialisation, but the same for the same seed, so cached features stay valid.
        keras.utils.set_random_seed(seed)
        weights: str | None = None
    else:
        weights = str(choice.path) if choice.path is not None else "imagenet"
    try:
        model = keras.applications.ResNet50(
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
    model.trainable = False
    return model


def weights_identity(model: keras.Model) -> str:
    """Return a short hash of a model's weight values: what feature-cache keys are made of."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


def preprocess(images: tf.Tensor) -> tf.Tensor:
    """Return ResNet50's preprocessing of a uint8 or float batch of 224×224 RGB images."""
    import keras
    import tensorflow as tf

    return keras.applications.resnet50.preprocess_input(tf.cast(images, tf.float32))


def unfreeze_last_stage(backbone: keras.Model) -> None:
    """Make the last residual stage trainable, keeping every BatchNorm layer frozen."""
    import keras

    backbone.trainable = True
    for layer in backbone.layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.startswith(LAST_STAGE_PREFIX) and not is_batch_norm
