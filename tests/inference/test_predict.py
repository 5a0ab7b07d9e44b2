"""Classifying photos with a saved run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flower_model.core.errors import ImageError
from flower_model.data.images import load_rgb
from flower_model.inference.predict import Classifier, Failure, Prediction
from flower_model.model.backbone import INPUT_SIZE, preprocess


@pytest.fixture(scope="module")
def classifier(sample, warm_template, resnet, tmp_path_factory):
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train
    from tests.conftest import built_once, copy_home

    with pytest.MonkeyPatch.context() as patch:
        copy_home(warm_template, tmp_path_factory.mktemp("predict") / "home", patch)
        train(sample, TrainConfig(epochs=2, batch_size=8, weights="none", patience=0))
        with built_once(resnet):  # the head loads under ResNet50 of its weights, built once
            loaded = Classifier.load("latest")
        yield loaded


def test_probabilities_are_in_class_order_and_sum_to_one(classifier, sample) -> None:
    path = sample.path_of(sample.records[0])
    prediction = classifier.classify_one(path)
    assert prediction.class_names == sample.class_names
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)
    image = load_rgb(path, size=INPUT_SIZE)[np.newaxis].astype("float32")
    expected = classifier.networks.classifier(preprocess(image)).numpy()[0]
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-4, atol=1e-6)
    assert prediction.top_class == sample.class_names[int(np.argmax(expected))]
    assert prediction.ranked()[0] == (prediction.top_class, prediction.top_probability)


def test_a_bad_photo_in_a_batch_does_not_stop_the_others(classifier, sample, tmp_path) -> None:
    good = sample.path_of(sample.records[1])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    buffer = io.BytesIO()
    Image.new("RGBA", (50, 40), (255, 0, 0, 128)).save(buffer, "PNG")
    results = classifier.classify([good, bad, ("upload.png", buffer.getvalue()), tmp_path / "nope"])
    assert [type(r) for r in results] == [Prediction, Failure, Prediction, Failure]
    assert results[1].name == "broken.jpg" and "broken.jpg" in results[1].message
    assert results[2].name == "upload.png"
    assert results[0].probabilities == pytest.approx(
        classifier.classify_one(good).probabilities, rel=1e-4
    )


def test_classify_one_raises_for_an_unreadable_photo(classifier, tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ImageError, match="empty.png"):
        classifier.classify_one(path)


def test_low_confidence_is_flagged() -> None:
    flat = Prediction("x.jpg", ("a", "b", "c"), (0.4, 0.35, 0.25))
    sure = Prediction("y.jpg", ("a", "b", "c"), (0.05, 0.9, 0.05))
    assert not flat.confident and sure.confident
    assert sure.to_json()["top_class"] == "b"
    assert not Prediction("y.jpg", ("a", "b", "c"), (0.05, 0.9, 0.05), threshold=0.95).confident


def test_the_not_sure_threshold_is_the_runs_own(classifier, sample) -> None:
    from dataclasses import replace

    from flower_model.metrics.calibration import CONFIDENT, Threshold

    # Ten held-out photos are too few to choose a threshold on: the default is used.
    assert classifier.run.metadata.calibration.threshold is None
    assert classifier.threshold == CONFIDENT
    # A run with a threshold of its own: its predictions are judged by it.
    meta = classifier.run.metadata
    own = Threshold(threshold=0.9, target=0.95, precision=0.97, coverage=0.6, below_accuracy=0.4)
    run = replace(
        classifier.run, loaded=replace(meta, calibration=replace(meta.calibration, threshold=own))
    )
    judged = Classifier(classifier.networks, classifier.class_names, run)
    prediction = judged.classify_one(sample.path_of(sample.records[0]))
    assert judged.threshold == 0.9 and prediction.threshold == 0.9
    assert prediction.confident == (prediction.top_probability >= 0.9)
    # Calibrated: the same top class, probabilities sharpened or softened, its own threshold.
    calibrated = prediction.scaled(0.5, 0.99)
    assert calibrated.top_class == prediction.top_class and calibrated.threshold == 0.99
    assert sum(calibrated.probabilities) == pytest.approx(1.0)
    assert calibrated.top_probability >= prediction.top_probability


def test_a_photo_loaded_once_classifies_as_from_its_file(classifier, sample) -> None:
    path = sample.path_of(sample.records[2])
    image = load_rgb(path.read_bytes(), size=INPUT_SIZE, name=path.name)
    assert classifier.classify_image(path.name, image) == classifier.classify_one(path)


def test_photos_get_the_saved_models_probabilities(classifier, sample) -> None:
    import tensorflow as tf

    photos = np.stack([load_rgb(sample.path_of(r), size=INPUT_SIZE) for r in sample.records[:6]])
    saved = classifier.networks.classifier(tf.constant(preprocess(photos)), training=False)
    # The folded serving copy: the same function, to float32 rounding.
    np.testing.assert_allclose(classifier.probabilities(photos), saved.numpy(), atol=1e-5)
