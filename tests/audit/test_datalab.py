"""The neighbours beyond the exact search: faiss's approximate index finds (nearly) every
row's true nearest rows, a planted near-duplicate always, and the graph cleanlab is given."""

from __future__ import annotations

import numpy as np

from flower_model.audit import datalab
from flower_model.audit.datalab import nearest_by_cosine, neighbour_graph, principal_components
from flower_model.model import scaling


def clustered_units(count: int, width: int = 32, seed: int = 0) -> np.ndarray:
    """Rows around 40 centres, as photos of a few kinds; unit length."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(40, width))
    rows = centres[generator.integers(0, 40, count)] + 0.5 * generator.normal(size=(count, width))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def test_the_approximate_search_finds_nearly_every_true_neighbour() -> None:
    units = clustered_units(4000)
    k = 10
    _, found = nearest_by_cosine(units, k + 1)
    exact = np.argsort(-(units @ units.T), axis=1)[:, : k + 1]
    recall = np.mean([len(set(a) & set(b)) / (k + 1) for a, b in zip(found, exact, strict=True)])
    assert recall >= 0.9
    assert (found[:, 0] == np.arange(len(units))).mean() >= 0.99  # each row finds itself first


def test_a_near_duplicate_is_its_twins_first_neighbour_and_the_graph_leaves_self_out(
    monkeypatch,
) -> None:
    monkeypatch.setattr(datalab, "PROBED_LISTS", 2)  # few groups probed: the twin is in its own
    units = clustered_units(3000, seed=1)
    twins = np.arange(0, 3000, 300)
    noise = 1e-3 * np.random.default_rng(2).normal(size=(len(twins), units.shape[1]))
    units[twins + 1] = units[twins] + noise.astype(np.float32)
    graph = neighbour_graph(units, 5)
    assert graph.shape == (3000, 3000) and graph.nnz == 3000 * 5
    rows = graph.tocsr()
    for twin in twins:
        columns = rows.indices[rows.indptr[twin] : rows.indptr[twin + 1]]
        distances = rows.data[rows.indptr[twin] : rows.indptr[twin + 1]]
        assert twin not in columns
        assert columns[np.argmin(distances)] == twin + 1
        assert np.all(np.diff(distances) >= -1e-6)  # ascending, as cleanlab reads them


def test_the_principal_components_block_by_block_are_scikit_learns(monkeypatch) -> None:
    from sklearn.decomposition import PCA

    monkeypatch.setattr(datalab, "STANDARDISED_BLOCK", 128)  # several blocks
    features = (clustered_units(1000, width=48) * 10).astype(np.float16)
    reduced = principal_components(features, 8)
    expected = PCA(8).fit_transform(scaling.standardised(features))
    assert reduced.dtype == np.float32 and reduced.shape == (1000, 8)
    signs = np.sign(np.sum(reduced * expected, axis=0))  # each component's sign is arbitrary
    np.testing.assert_allclose(reduced * signs, expected, atol=2e-3, rtol=1e-3)
