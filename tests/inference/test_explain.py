"""Grad-CAM: a heatmap of the right shape and range that follows the evidence."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.inference.explain import GradCam, overlay
from flower_model.inference.predict import Classifier
from flower_model.model.head import build_networks


@pytest.fixture(scope="module")
def classifier(resnet):
    return Classifier(build_networks(resnet, 3), ("a", "b", "c"))


def test_heatmap_is_224_square_in_unit_range(classifier) -> None:
    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    heat = GradCam(classifier)(image, 1)
    assert heat.shape == (224, 224)
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0, abs=1e-5)


def test_heatmap_depends_on_the_class(classifier) -> None:
    image = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    cam = GradCam(classifier)
    maps = [cam(image, k) for k in range(3)]
    assert any(m.max() > 0 for m in maps)
    assert not (np.allclose(maps[0], maps[1]) and np.allclose(maps[1], maps[2]))


def test_overlay_keeps_the_photo_and_colours_hot_spots() -> None:
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    blended = overlay(image, heat)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert blended[0, 0, 0] > blended[3, 3, 0]  # red where the model looked
    assert blended[3, 3, 2] > blended[0, 0, 2]  # blue where it did not


def test_the_layer_is_an_argument(classifier) -> None:
    image = np.random.default_rng(2).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    last = GradCam(classifier)(image, 0)
    earlier = GradCam(classifier, layer_name="conv4_block6_out")(image, 0)
    assert earlier.shape == (224, 224) and earlier.max() <= 1.0 + 1e-6
    assert not np.allclose(last, earlier)
    with pytest.raises(ValueError):
        GradCam(classifier, layer_name="no_such_layer")
