"""Project 2048-d ResNet50 features to 2-D for a map of the dataset: every photo by PCA, or
a stated sample when there are more than a map can draw, or t-SNE can place in time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flower_model.features.cache import FeatureCache
from flower_model.model.backbone import FEATURE_DIM

METHODS = ("PCA", "t-SNE")


def project(features: np.ndarray, method: str = "PCA", seed: int = 0) -> np.ndarray:
    """Return an (N, 2) projection of (N, D) features by PCA or t-SNE."""
    if len(features) < 3:
        raise ValueError("a map needs features of at least three photos")
    centred = features.astype(np.float64) - features.mean(axis=0)
    if method == "PCA":
        # The top two right-singular vectors are the principal axes.
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
        return centred @ _signed(axes[:2]).T
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        # PCA to 50 dimensions first: faster, and the usual advice for t-SNE.
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
        reduced = centred @ axes[: min(50, len(axes))].T
        perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not '{method}'")


def _signed(axes: np.ndarray) -> np.ndarray:
    """Return principal axes with their signs fixed, so the same data always gives the same
    picture (a sample of it too): each axis's largest component is positive."""
    largest = axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)]
    return axes * np.where(largest < 0, -1.0, 1.0)[:, None]


# Photos drawn on a map at most: beyond, a seeded random sample of this many, said so (the
# PCA's axes are still those of every photo). t-SNE, whose time grows faster than the
# number of photos, maps a sample of at most TSNE_POINTS.
MAP_POINTS = 20_000
TSNE_POINTS = 3_000
# Rows read from the cache at once when the PCA's axes are computed over every photo.
CHUNK_ROWS = 8192


@dataclass(frozen=True)
class FeatureMap:
    """A dataset's photos placed in 2-D by their features: which photos, where."""

    method: str
    rows: np.ndarray  # the drawn photos' positions in the list of photos asked for
    points: np.ndarray  # (len(rows), 2)
    total: int  # how many of the photos asked for have features (all of them drawn or not)

    @property
    def sampled(self) -> bool:
        """Return whether the map shows a sample of the photos with features."""
        return len(self.rows) < self.total


def feature_map(
    cache: FeatureCache, hashes: Sequence[str], method: str = "PCA", seed: int = 0
) -> FeatureMap:
    """Return the map of the photos whose features `cache` holds: PCA's axes fitted on every
    one of them (read a chunk at a time, so memory stays flat), t-SNE on a sample."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not '{method}'")
    have = np.flatnonzero(cache.found(hashes))
    if len(have) < 3:
        raise ValueError("a map needs features of at least three photos")
    limit = MAP_POINTS if method == "PCA" else TSNE_POINTS
    rng = np.random.default_rng(seed)
    rows = have if len(have) <= limit else np.sort(rng.choice(have, limit, replace=False))
    drawn, _ = cache.get_many([hashes[i] for i in rows])
    if method == "t-SNE" or len(rows) == len(have):
        return FeatureMap(method, rows, project(drawn, method, seed), len(have))
    mean, axes = _principal_axes(cache, [hashes[i] for i in have])
    points = (drawn.astype(np.float64) - mean) @ _signed(axes).T
    return FeatureMap(method, rows, points, len(have))


def _principal_axes(cache: FeatureCache, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return the features' mean and their top two principal axes, from the covariance
    accumulated a chunk of rows at a time."""
    total = np.zeros(FEATURE_DIM)
    gram = np.zeros((FEATURE_DIM, FEATURE_DIM))
    for start in range(0, len(hashes), CHUNK_ROWS):
        chunk, _ = cache.get_many(hashes[start : start + CHUNK_ROWS])
        total += chunk.sum(axis=0, dtype=np.float64)
        gram += chunk.T @ chunk  # float32 products (twice float64's speed), summed in float64
    mean = total / len(hashes)
    covariance = gram / len(hashes) - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    return mean, vectors[:, ::-1][:, :2].T
