"""The serving model (preprocessing inside) and TensorFlow's decoding of encoded photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from flower_model.data.images import load_rgb
from flower_model.data.synthetic import flower_photo


@pytest.fixture(scope="module")
def classifier(resnet):
    from flower_model.model.head import build_networks

    return build_networks(resnet, 5, seed=3).classifier


def _photos(count: int, size=(160, 120)) -> np.ndarray:
    rng = np.random.default_rng(5)
    colours = [(200, 30, 50), (240, 210, 30), (235, 235, 225)]
    images = [flower_photo(rng, colours[i % 3], size).resize((224, 224)) for i in range(count)]
    return np.stack([np.asarray(image, dtype=np.uint8) for image in images])


def test_serving_model_equals_preprocess_then_classifier_exactly(classifier) -> None:
    """The two plain layers are keras.applications.resnet50.preprocess_input, bit for bit."""
    import keras

    from flower_model.model.backbone import preprocess
    from flower_model.model.serving import serving_model

    pixels = _photos(4)
    pixels[0, :8, :8] = 0  # both ends of the range
    pixels[1, :8, :8] = 255
    model = serving_model(classifier)
    layers = {layer.name: layer for layer in model.layers}
    preprocessing = keras.Model(model.input, layers["resnet50_preprocessing"].output)
    expected = keras.applications.resnet50.preprocess_input(pixels.astype(np.float32))
    np.testing.assert_array_equal(preprocessing.predict(pixels, verbose=0), expected)
    direct = classifier.predict(preprocess(pixels).numpy(), verbose=0)
    np.testing.assert_array_equal(model.predict(pixels, verbose=0), direct)
    assert model.input.dtype == "uint8"


def test_serving_model_has_no_code_layers(classifier, tmp_path) -> None:
    """The export loads with safe_mode anywhere Keras runs: no Lambda, no custom class."""
    import keras

    from flower_model.model.serving import serving_model

    path = tmp_path / "m.keras"
    serving_model(classifier).save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    pixels = _photos(2)
    np.testing.assert_array_equal(
        loaded.predict(pixels, verbose=0), serving_model(classifier).predict(pixels, verbose=0)
    )


@pytest.mark.parametrize(
    "size", [(100, 80), (224, 224), (447, 500), (448, 448), (900, 1000), (1792, 1800), (5000, 300)]
)
def test_jpeg_scale_is_pillows_draft_scale(size) -> None:
    from flower_model.model.serving import JPEG_SCALES, draft_scale_index

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, "JPEG")
    image = Image.open(buffer)
    image.draft("RGB", (224, 224))
    pillow_scale = round(size[0] / image.size[0]) if image.size[0] != size[0] else 1
    index = int(draft_scale_index(np.int32(size[0]), np.int32(size[1])))
    assert JPEG_SCALES[index] == pillow_scale


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_tensorflow_decoding_is_within_one_level_of_the_apps() -> None:
    """JPEG (small, and large enough for a reduced-scale decode), PNG with alpha, GIF,
    WebP and BMP: TensorFlow's pixels differ from Pillow's by at most 1 in 255."""
    import tensorflow as tf

    from flower_model.model.serving import decode_photo

    rng = np.random.default_rng(2)
    photo = flower_photo(rng, (200, 30, 50), (320, 240))
    alpha = np.asarray(photo.convert("RGBA")).copy()
    alpha[:60, :, 3] = 0
    alpha[60:120, :, 3] = 128
    cases = {
        "small jpeg": _encoded(photo, "JPEG", quality=90),
        "large jpeg": _encoded(photo.resize((1600, 1200)), "JPEG", quality=92),
        "png with alpha": _encoded(Image.fromarray(alpha), "PNG"),
        "gif": _encoded(photo.convert("P"), "GIF"),
        "webp": _encoded(photo, "WEBP", lossless=True),
        "bmp": _encoded(photo, "BMP"),
    }
    for name, data in cases.items():
        decoded = decode_photo(tf.constant(data)).numpy().astype(int)
        difference = np.abs(decoded - load_rgb(data, size=224))
        assert difference.max() <= 1, name
        assert difference.mean() < 0.35, name
