"""The 2-D map: PCA finds the direction that separates the photos."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.features.embedding import project


def clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], 20)
    centres = rng.normal(size=(2, 64)) * 10
    return centres[labels] + rng.normal(size=(40, 64)), labels


@pytest.mark.parametrize("method", ["PCA", "t-SNE"])
def test_projection_keeps_clusters_apart(method: str) -> None:
    from threadpoolctl import threadpool_limits

    features, labels = clusters()
    # One thread: on a busy 2-core machine t-SNE's spinning OpenMP threads took 0.1 s to 30 s
    # for these 40 points (measured); the projection is the same.
    with threadpool_limits(limits=1):
        points = project(features, method)
    assert points.shape == (40, 2)
    a, b = points[labels == 0], points[labels == 1]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    spread = max(a.std(0).max(), b.std(0).max())
    assert gap > 3 * spread


def test_pca_is_deterministic_and_centred() -> None:
    features, _ = clusters(1)
    first, second = project(features), project(features[::-1])[::-1]
    np.testing.assert_allclose(first, second, atol=1e-8)
    np.testing.assert_allclose(first.mean(0), 0, atol=1e-8)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least three"):
        project(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="method"):
        project(np.random.default_rng(0).normal(size=(5, 3)), "umap")
