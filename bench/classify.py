"""Classifying one photo with the model loaded: the library's path vs the raw model call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.timing import Spread, spread, timed
from flower_model.data.images import load_rgb
from flower_model.inference.explain import GradCam
from flower_model.inference.predict import Classifier
from flower_model.model.backbone import INPUT_SIZE, preprocess


@dataclass(frozen=True)
class Classify:
    """Milliseconds per photo, one photo at a time, after warm-up."""

    classify_one: Spread  # Classifier.classify_one on a JPEG path: read, decode, model, result
    raw_model: Spread  # the classifier model alone on a preprocessed tensor already in memory
    ratio_p50: float  # classify_one p50 / raw_model p50
    gradcam: Spread  # GradCam on a decoded photo


def measure_classify(run_id: str, photo: Path, repeats: int) -> Classify:
    """Return classify_one, raw model and Grad-CAM timings for one photo."""
    import tensorflow as tf

    classifier = Classifier.load(run_id)
    model = classifier.networks.classifier
    raw_call = tf.function(lambda x: model(x, training=False))
    image = load_rgb(photo, size=INPUT_SIZE)
    ready = tf.constant(preprocess(image[np.newaxis]))
    cam = GradCam(classifier)
    # Warm-up, not timed: the first call of each traces its graph.
    top = classifier.class_names.index(classifier.classify_one(photo).top_class)
    raw_call(ready).numpy()
    cam(image, top)
    one, raw = [], []
    # Interleaved, so load from other processes falls on both alike.
    for _ in range(repeats):
        raw.append(timed(lambda: raw_call(ready).numpy())[1])
        one.append(timed(lambda: classifier.classify_one(photo))[1])
    heat = [timed(lambda: cam(image, top))[1] for _ in range(repeats)]
    one_spread, raw_spread = spread(one), spread(raw)
    return Classify(
        classify_one=one_spread,
        raw_model=raw_spread,
        ratio_p50=one_spread.p50_ms / raw_spread.p50_ms,
        gradcam=spread(heat),
    )
