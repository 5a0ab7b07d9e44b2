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


def test_a_large_set_is_mapped_as_a_stated_sample_on_every_photos_axes(
    fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.features import embedding
    from flower_model.features.cache import FeatureCache
    from flower_model.features.embedding import feature_map

    rng = np.random.default_rng(4)
    labels = np.arange(300) % 2
    centres = rng.normal(size=(2, 2048)) * 4
    rows = np.abs(centres[labels] + rng.normal(size=(300, 2048))).astype(np.float32)
    cache = FeatureCache("map")
    hashes = [f"{i:064x}" for i in range(300)]
    cache.put_many(hashes[:250], rows[:250])
    whole = feature_map(cache, hashes, "PCA")
    assert not whole.sampled and whole.total == 250 and list(whole.rows) == list(range(250))
    monkeypatch.setattr(embedding, "MAP_POINTS", 100)
    monkeypatch.setattr(embedding, "CHUNK_ROWS", 64)  # the axes read in four chunks
    sample = feature_map(cache, hashes, "PCA")
    assert sample.sampled and len(sample.rows) == 100 and sample.total == 250
    assert set(sample.rows) <= set(range(250))
    # The sample sits where the whole map put those photos (the axes of every photo).
    np.testing.assert_allclose(sample.points, whole.points[sample.rows], rtol=1e-3, atol=1e-3)
    monkeypatch.setattr(embedding, "TSNE_POINTS", 40)
    tsne = feature_map(cache, hashes, "t-SNE")
    assert tsne.sampled and tsne.points.shape == (40, 2)
