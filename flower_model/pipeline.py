"""tf.data pipelines from image files: parallel decode with the one image loader, then prefetch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.backbone import INPUT_SIZE
from flower_model.errors import DatasetError, ImageError
from flower_model.images import load_rgb

if TYPE_CHECKING:
    import tensorflow as tf


def _load(path: bytes) -> np.ndarray:
    try:
        return load_rgb(Path(path.decode()), size=INPUT_SIZE)
    except ImageError as exc:
        # The scan found this file usable; it changed since. Say so rather than crash.
        raise DatasetError(f"{exc} (the file changed since the dataset was scanned)") from exc


def augmenter() -> tf.keras.Sequential:
    """Return the fine-tuning augmentation: horizontal flip, small rotation and zoom."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.1, fill_mode="reflect"),
            keras.layers.RandomZoom(0.1, fill_mode="reflect"),
        ],
        name="augmentation",
    )


def image_dataset(
    paths: Sequence[Path],
    labels: Sequence[int] | None = None,
    batch_size: int = 32,
    shuffle_seed: int | None = None,
    augment: bool = False,
) -> tf.data.Dataset:
    """Return batches of 224×224 uint8 RGB images (with labels if given), decoded in parallel."""
    import tensorflow as tf

    items = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    if labels is not None:
        items = tf.data.Dataset.zip(items, tf.data.Dataset.from_tensor_slices(list(labels)))
    else:
        items = items.map(lambda p: (p, tf.constant(-1)))
    if shuffle_seed is not None:
        items = items.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.numpy_function(_load, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, (INPUT_SIZE, INPUT_SIZE, 3)), label

    batches = items.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batches = batches.batch(batch_size)
    if augment:
        layers = augmenter()
        batches = batches.map(
            lambda x, y: (layers(tf.cast(x, tf.float32), training=True), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if labels is None:
        batches = batches.map(lambda x, y: x)
    return batches.prefetch(tf.data.AUTOTUNE)
