"""Grad-CAM: where in the photo the model looked for the class it chose."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flower_model.model.backbone import INPUT_SIZE, LAST_CONV_LAYER, POOLING_LAYER, photo_function

if TYPE_CHECKING:
    from flower_model.inference.predict import Classifier


class GradCam:
    """Grad-CAM over one convolutional layer of ResNet50 (by default its last 7×7 maps),
    compiled once per classifier, as keras-io's `make_gradcam_heatmap` computes it."""

    def __init__(self, classifier: Classifier, layer_name: str = LAST_CONV_LAYER) -> None:
        import keras
        import tensorflow as tf

        resnet = classifier.networks.resnet
        # ResNet50 giving both the chosen layer's maps and its own output, in one pass.
        maps_and_output = keras.Model(
            resnet.inputs, [resnet.get_layer(layer_name).output, resnet.output]
        )
        pooling = classifier.networks.classifier.get_layer(POOLING_LAYER)
        head = classifier.networks.head

        def heatmap(images: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                maps, output = maps_and_output(images, training=False)
                tape.watch(maps)
                score = head(pooling(output), training=False)[:, class_index]
            grads = tape.gradient(score, maps)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., tf.newaxis]
            cam = tf.image.resize(cam, (INPUT_SIZE, INPUT_SIZE), method="bilinear")[..., 0]
            peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
            return tf.math.divide_no_nan(cam, peak)

        self._heatmap = photo_function(heatmap, tf.TensorSpec((), tf.int32))

    def __call__(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """Return a (224, 224) map in [0, 1] for one 224×224 uint8 RGB image."""
        return self._heatmap(image[np.newaxis], np.int32(class_index)).numpy()[0]


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Return the photo with the heatmap laid over it: dark blue (ignored) to red (looked at)."""
    heat = np.clip(heat, 0.0, 1.0)[..., np.newaxis]
    # A short blue-cyan-yellow-red ramp, enough to read a heatmap without matplotlib.
    stops = np.array([[0, 0, 130], [0, 200, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float64)
    position = heat[..., 0] * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    t = (position - low)[..., np.newaxis]
    colours = stops[low] * (1 - t) + stops[low + 1] * t
    blended = image.astype(np.float64) * (1 - alpha) + colours * alpha
    return blended.clip(0, 255).astype(np.uint8)
