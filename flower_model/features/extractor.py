"""The feature extractor: the frozen ResNet50 made fast; uint8 photos in, pooled features out.

It runs a copy of the network with BatchNorm folded into the convolutions (fold.py), in
float32 or in bfloat16 (precision.py decides which); the features are float32 either way.
The precision is part of the cache key, so features of the two arithmetics never mix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flower_model.data.synthetic import probe_images
from flower_model.features.cache import cache_key
from flower_model.model.backbone import photo_function, pooled_resnet, weights_identity
from flower_model.model.precision import PRECISIONS, choose_precision, cosine_similarity

if TYPE_CHECKING:
    import keras


class FeatureExtractor:
    """ResNet50's pooled features of photos, computed in one arithmetic (float32 or bfloat16)."""

    def __init__(
        self, resnet: keras.Model, precision: str = "float32", identity: str | None = None
    ) -> None:
        import tensorflow as tf

        from flower_model.model.fold import fold_batch_norm

        if precision not in PRECISIONS or precision == "auto":
            raise ValueError(f"an extractor computes in float32 or bfloat16, not '{precision}'")
        self.precision = precision
        self.identity = identity or weights_identity(resnet)
        self.model = pooled_resnet(fold_batch_norm(resnet, dtype=precision))
        model = self.model
        self._call = photo_function(
            lambda images: tf.cast(model(images, training=False), tf.float32)
        )

    @classmethod
    def create(
        cls, resnet: keras.Model, precision: str = "auto", identity: str | None = None
    ) -> FeatureExtractor:
        """Return the fastest extractor that is true to float32 ('auto'), or the one asked for."""
        identity = identity or weights_identity(resnet)
        built: dict[str, FeatureExtractor] = {}  # the check's extractors, kept for the answer

        def make(chosen: str) -> FeatureExtractor:
            if chosen not in built:
                built[chosen] = cls(resnet, chosen, identity)
            return built[chosen]

        def measure_cosine() -> float:
            probe = probe_images()
            exact, fast = make("float32").run(probe), make("bfloat16").run(probe)
            return float(cosine_similarity(exact, fast).min())

        return make(choose_precision(precision, identity, measure_cosine))

    @property
    def cache_key(self) -> str:
        """Return the feature-cache namespace of these weights at this precision."""
        return cache_key(self.identity, self.precision)

    def run(self, images: np.ndarray) -> np.ndarray:
        """Return the 2048-d pooled features of a uint8 batch of 224×224 RGB images."""
        return self._call(images).numpy()
