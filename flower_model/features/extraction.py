"""Features of a dataset's photos: read from the cache, and only the photos it lacks run
through ResNet50 (which is not even built when the cache holds them all)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.cluster import cluster_address
from flower_model.core.errors import FeatureError
from flower_model.core.locks import holding
from flower_model.features.cache import ExtractionStats, FeatureCache, cache_key
from flower_model.features.compute import Progress, extract_features
from flower_model.model.backbone import WeightsChoice

if TYPE_CHECKING:
    from flower_model.data.dataset import Dataset


@dataclass(frozen=True)
class DatasetFeatures:
    """Every photo of a dataset's features, in the dataset's order, and what made them."""

    features: np.ndarray
    stats: ExtractionStats
    cache_key: str  # the cache namespace: one set of weights, one arithmetic
    weights_label: str
    transfer_learning: bool
    identity: str = ""  # the weights' `weights_identity`


def _known_cache(identity: str | None, precision: str) -> tuple[FeatureCache, str] | None:
    """Return the cache namespace a training would use and the arithmetic `precision`
    resolves to, when both are known without building ResNet50, else None."""
    from flower_model.model.precision import known_precision

    chosen = known_precision(precision, identity) if identity is not None else None
    if identity is None or chosen is None:
        return None
    return FeatureCache(cache_key(identity, chosen)), chosen


def _all_cached(
    hashes: Sequence[str], identity: str | None, precision: str, dtype: type
) -> tuple[np.ndarray, str, str] | None:
    """Return (features, precision, cache key) when every photo's features are in the cache
    of known weights at a known precision, else None: then ResNet50 is needed."""
    known = _known_cache(identity, precision)
    if known is None or not known[0].may_hold_all(hashes):  # then extraction reads them, once
        return None
    cache, chosen = known
    features, found = cache.get_many(hashes, dtype)
    return (features, chosen, cache.key) if found.all() else None


def needs_extraction(
    dataset: Dataset, weights: str = "imagenet", seed: int = 42, precision: str = "auto"
) -> bool:
    """Return whether a training with these weights would have to run ResNet50 on some of
    the dataset's photos (a look at file names; TensorFlow is not imported)."""
    from flower_model.model.backbone import known_identity, resolve_weights

    known = _known_cache(known_identity(resolve_weights(weights), seed), precision)
    return known is None or not known[0].may_hold_all([r.sha256 for r in dataset.records])


def features_work(dataset: Dataset, choice: WeightsChoice, seed: int, precision: str) -> str:
    """Return the name of the lock held while a dataset's features are computed."""
    return f"features:{dataset.fingerprint}:{choice.label}:{seed}:{precision}"


def dataset_features(
    dataset: Dataset,
    weights: str | WeightsChoice = "imagenet",
    seed: int = 42,
    precision: str = "auto",
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    batch_size: int = 32,
    on_phase: Callable[[str], None] | None = None,
    dtype: type = np.float32,
) -> DatasetFeatures:
    """Return the features of every photo of a dataset, computing those not in the cache.

    When every photo's features are cached for weights built before, ResNet50 is not even
    built: what weights it would have is known from their source (`backbone.known_identity`).
    The features come as `dtype`: float16, as the cache holds them, takes half the memory
    (100,000 photos: 0.4 GB) for the same values.
    """
    from flower_model.features.extractor import FeatureExtractor
    from flower_model.model.backbone import (
        build_resnet50,
        identity_of,
        known_identity,
        resolve_weights,
    )

    phase = on_phase or (lambda message: None)
    choice = weights if isinstance(weights, WeightsChoice) else resolve_weights(weights)
    paths = [dataset.path_of(r) for r in dataset.records]
    hashes = [r.sha256 for r in dataset.records]
    start = time.perf_counter()

    def from_cache() -> DatasetFeatures | None:
        # The weights' identity is looked up each time: a process waited for may have
        # found it meanwhile.
        identity = known_identity(choice, seed)
        cached = _all_cached(hashes, identity, precision, dtype)
        if cached is None:
            return None
        features, chosen, key = cached
        if progress is not None:
            progress(len(set(hashes)), len(set(hashes)))
        stats = ExtractionStats(len(hashes), len(hashes), 0, time.perf_counter() - start, chosen)
        return DatasetFeatures(
            features, stats, key, choice.label, choice.transfer_learning, identity
        )

    found = from_cache()
    if found is not None:
        return found
    # One process at a time computes a dataset's features: a second server on this
    # workspace, or the command line, waits, then finds them in the cache.
    work = features_work(dataset, choice, seed, precision)
    waiting = "another process on this workspace is computing these features: waiting for it"
    with holding(work, cancelled, on_wait=lambda: phase(waiting)) as waited:
        found = from_cache() if waited else None
        if found is not None:
            return found
        if cluster_address() is not None:
            return _on_cluster(
                dataset, choice, seed, precision, batch_size, dtype, progress, cancelled, phase
            )
        phase(f"loading ResNet50 (weights {choice.label})")
        resnet = build_resnet50(choice, seed=seed)
        identity = identity_of(resnet, choice, seed)
        phase("preparing ResNet50 for feature extraction")
        extractor = FeatureExtractor.create(resnet, precision, identity)
        phase(f"extracting features ({extractor.precision})")
        features, stats = extract_features(
            paths,
            hashes,
            extractor,
            FeatureCache.described(extractor.cache_key, choice.label, extractor.precision),
            batch_size=batch_size,
            progress=progress,
            cancelled=cancelled,
        )
    return DatasetFeatures(
        features.astype(dtype, copy=False),
        stats,
        extractor.cache_key,
        choice.label,
        choice.transfer_learning,
        identity,
    )


def _on_cluster(
    dataset: Dataset,
    choice: WeightsChoice,
    seed: int,
    precision: str,
    batch_size: int,
    dtype: type,
    progress: Progress | None,
    cancelled: Callable[[], bool] | None,
    phase: Callable[[str], None],
) -> DatasetFeatures:
    """Compute the features the cache lacks on the Ray cluster, then read them all."""
    from flower_model.features.distributed import extract_on_cluster

    paths = [dataset.path_of(r) for r in dataset.records]
    hashes = [r.sha256 for r in dataset.records]
    done = extract_on_cluster(
        paths, hashes, choice, seed, precision, batch_size, progress, cancelled, phase
    )
    features, found = done.cache.get_many(hashes, dtype)
    if not found.all():
        raise FeatureError(
            f"{int((~found).sum())} photo(s)' features are not in the cache after the "
            "cluster's extraction: does every node see this workspace folder?"
        )
    return DatasetFeatures(
        features, done.stats, done.cache.key, choice.label, choice.transfer_learning, done.identity
    )
