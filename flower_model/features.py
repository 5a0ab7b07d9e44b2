"""Extract ResNet50's pooled features once per image and cache them on disk."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model import workspace
from flower_model.backbone import (
    FEATURE_DIM,
    INPUT_SIZE,
    PREPROCESSING,
    build_backbone,
    preprocess,
    resolve_weights,
    weights_identity,
)
from flower_model.errors import TrainingCancelled
from flower_model.inference import PRECISIONS

if TYPE_CHECKING:
    import keras

    from flower_model.data import Dataset

# float16 halves the cache; values this large would not survive it (random weights can make them).
FLOAT16_LIMIT = 60000.0

Progress = Callable[[int, int], None]
ABOUT_FILE = "about.json"


@dataclass(frozen=True)
class ExtractionStats:
    """How many features were asked for, read from the cache, and computed by ResNet50."""

    total: int
    cached: int
    computed: int
    seconds: float
    precision: str = "float32"  # what ResNet50 computed in


def cache_key(weights_identity: str, precision: str) -> str:
    """Return the cache namespace of one set of backbone weights, precision and preprocessing."""
    text = f"resnet50|{weights_identity}|{precision}|{INPUT_SIZE}|{PREPROCESSING}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheInfo:
    """One namespace of the feature cache: which weights made it and how many photos it holds."""

    key: str
    weights_label: str
    count: int
    precision: str = "float32"  # the arithmetic ResNet50 computed them in


class FeatureCache:
    """Pooled features on disk, one small .npy per image content hash; writes are atomic."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.key = key
        self.folder = (root or workspace.features_dir()) / key

    @classmethod
    def for_backbone(cls, backbone: Backbone, weights_label: str) -> FeatureCache:
        """Return the cache namespace of a backbone's weights and precision."""
        cache = cls(backbone.cache_key)
        cache.describe(weights_label, backbone.precision)
        return cache

    def describe(self, weights_label: str, precision: str) -> None:
        """Record which weights and arithmetic made this namespace, for pages without TensorFlow."""
        about = self.folder / ABOUT_FILE
        if not about.exists():
            text = json.dumps({"weights_label": weights_label, "precision": precision})
            workspace.write_atomic(about, text)

    def get_many(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (features, found mask) for many photos; missing rows are zeros."""
        features = np.zeros((len(hashes), FEATURE_DIM), dtype=np.float32)
        found = np.zeros(len(hashes), dtype=bool)
        for i, sha in enumerate(hashes):
            vector = self.get(sha)
            if vector is not None:
                features[i], found[i] = vector, True
        return features, found

    def _path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str) -> np.ndarray | None:
        """Return the cached features of an image, or None if missing, stale or corrupt."""
        path = self._path(sha256)
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            path.unlink(missing_ok=True)  # corrupt: rebuilt by the caller
            return None
        if vector.shape != (FEATURE_DIM,) or not np.all(np.isfinite(vector)):
            path.unlink(missing_ok=True)
            return None
        return vector.astype(np.float32)

    def put(self, sha256: str, vector: np.ndarray) -> np.ndarray:
        """Store an image's features atomically; return them as a later `get` will."""
        small = np.all(np.abs(vector) < FLOAT16_LIMIT)
        stored = vector.astype(np.float16 if small else np.float32)
        buffer = io.BytesIO()
        np.save(buffer, stored, allow_pickle=False)
        workspace.write_atomic(self._path(sha256), buffer.getvalue())
        return stored.astype(np.float32)

    def bytes_used(self) -> int:
        """Return the bytes the cache takes on disk."""
        if not self.folder.exists():
            return 0
        return sum(p.stat().st_size for p in self.folder.rglob("*.npy"))


class Backbone:
    """The frozen ResNet50 as a feature extractor: a uint8 image batch in, pooled features out.

    It runs a copy of the network with BatchNorm folded into the convolutions, computing in
    float32 or in bfloat16; the features are float32 either way. The precision is part of the
    cache key, so features of the two precisions never mix.
    """

    def __init__(
        self, resnet: keras.Model, precision: str = "float32", identity: str | None = None
    ) -> None:
        import tensorflow as tf

        from flower_model.inference import fold_batch_norm

        if precision not in PRECISIONS or precision == "auto":
            raise ValueError(f"a backbone computes in float32 or bfloat16, not '{precision}'")
        self.precision = precision
        self.identity = identity or weights_identity(resnet)
        self.model = pooled_extractor(fold_batch_norm(resnet, dtype=precision))
        model = self.model
        self._call = tf.function(
            lambda images: tf.cast(model(preprocess(images), training=False), tf.float32),
            input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.uint8)],
            reduce_retracing=True,
        )

    @classmethod
    def create(
        cls, resnet: keras.Model, precision: str = "auto", identity: str | None = None
    ) -> Backbone:
        """Return the fastest backbone that is true to float32 ('auto'), or the one asked for.

        'auto' is bfloat16 on a CPU that computes it natively, once its features were found at
        cosine similarity ≥ MIN_BF16_COSINE to float32 ones for these weights (checked once
        per weights on probe images and remembered), else float32.
        """
        from flower_model import inference

        inference.validate_precision(precision)
        identity = identity or weights_identity(resnet)
        if precision != "auto":
            return cls(resnet, precision, identity)
        if not inference.cpu_has_bf16():
            return cls(resnet, "float32", identity)
        cosine = inference.recorded_cosine(identity)
        if cosine is not None:
            agrees = cosine >= inference.MIN_BF16_COSINE
            return cls(resnet, "bfloat16" if agrees else "float32", identity)
        fast, exact = cls(resnet, "bfloat16", identity), cls(resnet, "float32", identity)
        probe = inference.probe_images()
        cosine = float(inference.cosine_similarity(exact.run(probe), fast.run(probe)).min())
        inference.record_cosine(identity, cosine)
        return fast if cosine >= inference.MIN_BF16_COSINE else exact

    @property
    def cache_key(self) -> str:
        """Return the feature-cache namespace of these weights at this precision."""
        return cache_key(self.identity, self.precision)

    def run(self, images: np.ndarray) -> np.ndarray:
        """Return the 2048-d pooled features of a uint8 batch of 224×224 RGB images."""
        return self._call(images).numpy()


def extract_features(
    paths: Sequence[Path],
    hashes: Sequence[str],
    backbone: Backbone,
    cache: FeatureCache,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, ExtractionStats]:
    """Return features for every image, computing only those not in the cache."""
    from flower_model.pipeline import image_dataset

    start = time.perf_counter()
    found = {sha: vector for sha in set(hashes) if (vector := cache.get(sha)) is not None}
    todo: dict[str, Path] = {}
    for path, sha in zip(paths, hashes, strict=True):
        if sha not in found:
            todo.setdefault(sha, Path(path))
    total = len(set(hashes))
    if progress is not None:
        progress(len(found), total)
    if todo:
        shas = list(todo)
        batches = image_dataset([todo[s] for s in shas], batch_size=batch_size)
        done = 0
        for images in batches:
            if cancelled is not None and cancelled():
                raise TrainingCancelled("stopped while extracting features")
            vectors = backbone.run(images)
            for sha, vector in zip(shas[done : done + len(vectors)], vectors, strict=True):
                # Keep what the cache holds, so a first and a second run see the same numbers.
                found[sha] = cache.put(sha, vector)
            done += len(vectors)
            if progress is not None:
                progress(total - len(todo) + done, total)
    features = np.stack([found[sha] for sha in hashes]).astype(np.float32)
    stats = ExtractionStats(
        total=len(hashes),
        cached=len(hashes) - sum(1 for sha in hashes if sha in todo),
        computed=len(todo),
        seconds=time.perf_counter() - start,
        precision=backbone.precision,
    )
    return features, stats


def cache_infos(root: Path | None = None) -> list[CacheInfo]:
    """Return the feature-cache namespaces on disk, fullest first (reads no features)."""
    root = root or workspace.features_dir()
    infos = []
    for folder in root.iterdir() if root.is_dir() else []:
        try:
            about = json.loads((folder / ABOUT_FILE).read_text())
            label = about["weights_label"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        count = sum(1 for _ in folder.glob("*/*.npy"))
        infos.append(CacheInfo(folder.name, label, count, about.get("precision", "float32")))
    return sorted(infos, key=lambda info: info.count, reverse=True)


def pooled_extractor(backbone: keras.Model) -> keras.Model:
    """Return image -> backbone -> global average pooling: the 2048-d features."""
    import keras

    image = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone(image, training=False))
    return keras.Model(image, pooled)


def compute_dataset_features(
    dataset: Dataset,
    weights: str = "imagenet",
    seed: int = 42,
    precision: str = "auto",
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExtractionStats:
    """Fill the feature cache for every photo of a dataset (for the map), without training."""
    choice = resolve_weights(weights)
    backbone = Backbone.create(build_backbone(choice, seed=seed), precision)
    _, stats = extract_features(
        [dataset.path_of(r) for r in dataset.records],
        [r.sha256 for r in dataset.records],
        backbone,
        FeatureCache.for_backbone(backbone, choice.label),
        progress=progress,
        cancelled=cancelled,
    )
    return stats
