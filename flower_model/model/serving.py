"""The model as other programs use it: photos in, probabilities out, preprocessing inside.

A run's saved classifier takes ResNet50-preprocessed float images, and the app applies
`backbone.preprocess` before it. An export must not leave that step for its user to
remember, so `serving_model` puts it inside, in two plain Keras layers (no Lambda, no custom
code: the file loads with `safe_mode` anywhere Keras runs):

- `Rescaling(1.0)` turns uint8 pixels into float32;
- a 3→3 `Dense` whose kernel swaps red and blue and whose bias subtracts ImageNet's channel
  means: exactly `keras.applications.resnet50.preprocess_input` ("caffe"), since each output
  is one pixel value times 1, plus zeros, plus the bias, and rounds once as the original does.

`image_bytes_function` adds the decoding of encoded photos for a SavedModel's second signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flower_model.model.backbone import INPUT_SHAPE, INPUT_SIZE

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# keras.applications.resnet50.preprocess_input's means, in the BGR order it subtracts them in.
IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)
SERVING_INPUT = "pixels"
PREPROCESSING_LAYER = "resnet50_preprocessing"
# What every export's model takes and gives, for model cards and predict.py.
INPUT_CONTRACT = (
    f"uint8 RGB pixels, shape (batch, {INPUT_SIZE}, {INPUT_SIZE}, 3), values 0-255: the photo "
    "upright, alpha composited on white, resized to 224×224 with Pillow's bilinear filter"
)
OUTPUT_CONTRACT = "float32 class probabilities, shape (batch, classes), in labels.txt order"


def serving_model(classifier: keras.Model) -> keras.Model:
    """Return uint8 pixels -> ResNet50 preprocessing -> the run's classifier, as one Keras model."""
    import keras

    pixels = keras.Input(shape=INPUT_SHAPE, dtype="uint8", name=SERVING_INPUT)
    x = keras.layers.Rescaling(1.0, name="pixels_to_float")(pixels)
    caffe = keras.layers.Dense(3, name=PREPROCESSING_LAYER)
    x = caffe(x)
    swap_red_blue = np.eye(3, dtype=np.float32)[::-1]  # out[c] = in[2 - c]
    caffe.set_weights([swap_red_blue, -np.asarray(IMAGENET_BGR_MEANS, dtype=np.float32)])
    return keras.Model(pixels, classifier(x, training=False), name="flower_lens")


# JPEG decoding scales: Pillow's `draft` and TensorFlow's `ratio` both offer these.
JPEG_SCALES = (1, 2, 4, 8)


def draft_scale_index(width: tf.Tensor, height: tf.Tensor) -> tf.Tensor:
    """Return the index in JPEG_SCALES of Pillow's `draft` scale for a 224×224 request: the
    largest scale that still leaves both sides at least 224 (what the app's JPEG decode does)."""
    import tensorflow as tf

    fits = tf.minimum(width // INPUT_SIZE, height // INPUT_SIZE)
    cases = [(fits >= scale, lambda i=i: tf.constant(i)) for i, scale in enumerate(JPEG_SCALES)]
    return tf.case(cases[:0:-1], default=lambda: tf.constant(0))


def decode_photo(data: tf.Tensor) -> tf.Tensor:
    """Return one encoded photo as uint8 224×224×3, as close to the app's Pillow decode as
    TensorFlow's own decoders get: a JPEG at Pillow's reduced scale with the accurate integer
    DCT, other formats' first frame with alpha composited on white, then an antialiased
    bilinear resize, rounded. TensorFlow cannot apply EXIF orientation (photos are taken as
    stored), and its GIF decoder drops transparency (clear pixels are not made white)."""
    import tensorflow as tf

    def jpeg() -> tf.Tensor:
        shape = tf.io.extract_jpeg_shape(data)
        branches = [
            lambda ratio=ratio: tf.io.decode_jpeg(
                data, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE"
            )
            for ratio in JPEG_SCALES
        ]
        image = tf.switch_case(draft_scale_index(shape[1], shape[0]), branches)
        return tf.cast(image, tf.float32)

    def other() -> tf.Tensor:
        image = tf.cast(tf.io.decode_image(data, expand_animations=False), tf.float32)
        opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255.0)
        grey = image[..., :1]
        rgba = tf.switch_case(  # grey, grey + alpha, RGB, RGBA: all as RGBA
            tf.shape(image)[-1] - 1,
            [
                lambda: tf.concat([grey, grey, grey, opaque], -1),
                lambda: tf.concat([grey, grey, grey, image[..., 1:2]], -1),
                lambda: tf.concat([image[..., :3], opaque], -1),
                lambda: image[..., :4],
            ],
        )
        alpha = rgba[..., 3:] / 255.0
        return rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape((None, None, 3))
    resized = tf.image.resize(image, (INPUT_SIZE, INPUT_SIZE), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def image_bytes_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """Return a compiled function: a batch of encoded photos (tf.string) -> probabilities."""
    import tensorflow as tf

    pixels = tf.TensorSpec(INPUT_SHAPE, tf.uint8)

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    def from_image_bytes(data: tf.Tensor) -> tf.Tensor:
        images = tf.map_fn(decode_photo, data, fn_output_signature=pixels)
        return model(images, training=False)

    return from_image_bytes
