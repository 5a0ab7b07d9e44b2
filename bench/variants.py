"""ResNet50's arithmetic side by side: plain Keras, BatchNorm folded, XLA, bfloat16, batch sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.timing import timed
from flower_model.features.extractor import FeatureExtractor
from flower_model.model.backbone import photo_function
from flower_model.model.precision import cosine_similarity, cpu_has_bf16

if TYPE_CHECKING:
    import keras


# The variants measured at every batch size; the others at the first one only.
SWEPT = ("BatchNorm folded, float32", "BatchNorm folded, bfloat16")


@dataclass(frozen=True)
class Variant:
    """One way of computing pooled features of a batch: its speed and how true it is."""

    name: str
    batch_size: int
    images_per_s: float  # best of the repeats, tracing excluded
    cosine_min: float  # lowest cosine similarity to the plain float32 features
    max_relative_error: float  # largest |difference| / largest |plain feature|


@dataclass(frozen=True)
class Variants:
    """Every variant, on the same photos, and which one `FeatureExtractor.create('auto')` chose."""

    photos: int
    source: str  # where the photos came from
    cpu_bf16: bool
    chosen: str
    variants: tuple[Variant, ...]

    def rate(self, name: str, batch_size: int) -> float:
        """Return the images per second of one variant at one batch size."""
        return next(
            v.images_per_s for v in self.variants if v.name == name and v.batch_size == batch_size
        )


def _plain(resnet: keras.Model, jit_compile: bool = False):
    import tensorflow as tf

    return photo_function(
        lambda x: tf.reduce_mean(resnet(x, training=False), axis=(1, 2)), jit_compile=jit_compile
    )


def _folded_xla(extractor: FeatureExtractor):
    model = extractor.model
    return photo_function(lambda x: model(x, training=False), jit_compile=True)


def measure_variants(
    resnet: keras.Model,
    images: np.ndarray,
    chosen: FeatureExtractor,
    batch_sizes: tuple[int, ...],
    repeats: int,
    source: str,
) -> Variants:
    """Return speed and agreement of each variant on `images` (uint8, 224×224)."""
    folded32 = FeatureExtractor(resnet, "float32", chosen.identity)
    calls = {
        "plain Keras float32": _plain(resnet),
        "plain Keras float32 + XLA": _plain(resnet, jit_compile=True),
        "BatchNorm folded, float32": folded32.run,
        "BatchNorm folded, float32 + XLA": _folded_xla(folded32),
    }
    if cpu_has_bf16():  # elsewhere bfloat16 is emulated: slow, and not what auto would pick
        bfloat16 = FeatureExtractor(resnet, "bfloat16", chosen.identity)
        calls["BatchNorm folded, bfloat16"] = bfloat16.run

    def features(call, batch: np.ndarray) -> np.ndarray:
        return np.asarray(call(batch), dtype=np.float32)

    reference = features(calls["plain Keras float32"], images)
    scale = float(np.abs(reference).max()) or 1.0
    results = []
    for name, call in calls.items():
        got = features(call, images)
        cosine = float(cosine_similarity(got, reference).min())
        error = float(np.abs(got - reference).max()) / scale
        sizes = batch_sizes if name in SWEPT else batch_sizes[:1]
        for size in sizes:
            batch = images[:size]
            features(call, batch)  # warm-up: tracing is a one-off cost
            best = min(timed(lambda b=batch, c=call: features(c, b))[1] for _ in range(repeats))
            results.append(Variant(name, len(batch), len(batch) / best, cosine, error))
    return Variants(
        photos=len(images),
        source=source,
        cpu_bf16=cpu_has_bf16(),
        chosen=chosen.precision,
        variants=tuple(results),
    )
