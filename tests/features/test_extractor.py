"""The feature extractor: ResNet50's own preprocessing exactly once, float32 true to the
textbook network, bfloat16 only where it agrees with float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flower_model.data.images import load_rgb
from flower_model.features.extractor import FeatureExtractor
from flower_model.model import precision
from flower_model.model.backbone import INPUT_SIZE, preprocess


@pytest.fixture(scope="module")
def photos(sample) -> np.ndarray:
    step = len(sample.records) // 6
    return np.stack(
        [load_rgb(sample.path_of(r), size=INPUT_SIZE) for r in sample.records[::step][:6]]
    )


def test_float32_features_equal_resnet50_on_preprocessed_resized_images(
    resnet, reference, photos
) -> None:
    expected = reference(
        keras.applications.resnet50.preprocess_input(photos.astype("float32")), training=False
    ).numpy()
    got = FeatureExtractor(resnet, precision="float32").run(photos)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * scale)
    # An extractor that preprocessed twice, or not at all, would be far off: the check has teeth.
    twice = reference(
        keras.applications.resnet50.preprocess_input(
            keras.applications.resnet50.preprocess_input(photos.astype("float32"))
        )
    ).numpy()
    raw = reference(photos.astype("float32")).numpy()
    for wrong in (twice, raw):
        assert np.abs(wrong - expected).max() > 100 * (1e-3 * scale)


def test_bfloat16_extractor_computes_in_bfloat16_close_to_float32(resnet, photos) -> None:
    fast = FeatureExtractor(resnet, precision="bfloat16")
    assert fast.model.get_layer("resnet50").get_layer("conv1_conv").compute_dtype == "bfloat16"
    features = fast.run(photos)
    exact = resnet(preprocess(photos), training=False).numpy().mean(axis=(1, 2))
    assert features.dtype == np.float32 and features.shape == (len(photos), 2048)
    assert precision.cosine_similarity(features, exact).min() >= precision.MIN_BF16_COSINE
    # It really is another arithmetic: further from float32 than float32's own tolerance.
    assert np.abs(features - exact).max() > 1e-5 * np.abs(exact).max()


def test_auto_picks_bfloat16_on_a_bf16_cpu_and_remembers_the_check(
    resnet, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "device_has_bf16", lambda: True)
    extractor = FeatureExtractor.create(resnet, "auto")
    assert extractor.precision == "bfloat16"
    cosine = precision.recorded_cosine(extractor.identity)
    assert cosine is not None and cosine >= precision.MIN_BF16_COSINE
    # Once checked, it is not checked again: no float32 extractor is built.
    built: list[str] = []
    real_init = FeatureExtractor.__init__

    def counting(self, resnet, precision="float32", identity=None):
        built.append(precision)
        real_init(self, resnet, precision, identity)

    monkeypatch.setattr(FeatureExtractor, "__init__", counting)
    assert FeatureExtractor.create(resnet, "auto").precision == "bfloat16"
    assert built == ["bfloat16"]


def test_auto_keeps_float32_when_bfloat16_disagrees(
    resnet, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "device_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "MIN_BF16_COSINE", 1.01)  # no arithmetic can agree this well
    assert FeatureExtractor.create(resnet, "auto").precision == "float32"


def test_an_extractor_computes_in_one_arithmetic(resnet) -> None:
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        FeatureExtractor(resnet, precision="auto")
    with pytest.raises(ValueError, match="precision"):
        FeatureExtractor.create(resnet, "half")
