"""cleanlab's Datalab on a dataset's features: run quietly, failures raised, not printed."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import AuditError
from flower_model.model.scaling import (
    STANDARDISED_BLOCK,
    shifted_and_scaled,
    standardisation,
    standardised,
)

if TYPE_CHECKING:
    from cleanlab import Datalab
    from scipy.sparse import csr_matrix

# Neighbours each photo is compared with (cleanlab's default), fewer in a smaller dataset.
NEIGHBOURS = 10
# Up to this many photos, cleanlab finds each photo's neighbours itself: exactly, by the
# cosine distance between all 2,048 features of every pair of photos, which grows with the
# square of their number (100,000 photos: 4·10¹³ operations). Beyond, the neighbours are
# searched on the standardised features' top principal components (REDUCED_DIMENSIONS of
# them, a block of rows at a time), by the same cosine distance, in faiss's approximate
# inverted-file index (each photo compared with a few groups of photos, not all), and
# cleanlab is given the graph: what the neighbours look like to cleanlab is the same kind of
# graph.
EXACT_NEIGHBOURS_MAX = 20_000
REDUCED_DIMENSIONS = 128
# The groups of the approximate search each row is compared within (see nearest_by_cosine).
PROBED_LISTS = 16
NEIGHBOUR_ISSUES = ("near_duplicate", "outlier", "non_iid")


def find_issues(
    features: np.ndarray,
    issue_types: dict[str, dict],
    labels: np.ndarray | None = None,
    pred_probs: np.ndarray | None = None,
) -> Datalab:
    """Return a Datalab that has looked for these issues, on the standardised features.

    cleanlab prints a check that fails and goes on; here it raises AuditError with what
    cleanlab said, so that a finding is never silently missing.
    """
    from cleanlab import Datalab

    count = len(features)
    if count < 3:
        raise AuditError(f"finding issues needs at least three photos, not {count}")
    k = min(NEIGHBOURS, count - 1)
    types = {
        name: {**({"k": k} if name in ("near_duplicate", "outlier") else {}), **options}
        for name, options in issue_types.items()
    }
    given = np.zeros(count, dtype=int) if labels is None else np.asarray(labels)
    lab = Datalab(data={"label": given}, label_name="label", verbosity=0)
    graph = rows = None
    if count > EXACT_NEIGHBOURS_MAX and any(name in NEIGHBOUR_ISSUES for name in types):
        # The issues checked need the neighbours alone: no float32 copy of all the rows
        # (100,000 photos: 0.8 GB).
        graph = neighbour_graph(features, k)
    else:
        rows = standardised(features)
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        lab.find_issues(
            features=rows,  # None beside the graph: the graph is what they would compute
            knn_graph=graph,
            pred_probs=pred_probs,
            issue_types=types,
        )
    missing = [name for name in types if name not in lab.info]
    if missing:
        text = " ".join(said.getvalue().split())
        raise AuditError(f"cleanlab could not check {', '.join(missing)}: {text}")
    return lab


def neighbour_graph(features: np.ndarray, k: int) -> csr_matrix:
    """Return each row's k nearest other rows by cosine distance on the standardised rows'
    top principal components, as the sparse graph cleanlab takes (each row's distances
    ascending)."""
    reduced = principal_components(features, REDUCED_DIMENSIONS)
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    similarities, indices = nearest_by_cosine(reduced, k + 1)
    # On unit vectors the cosine distance is 1 - the inner product.
    return _graph_without_self(1.0 - similarities, indices, k)


def principal_components(features: np.ndarray, dimensions: int) -> np.ndarray:
    """Return the standardised rows projected on their top `dimensions` principal components
    (float32, as many as the rows allow), a block of rows at a time: the features' covariance
    (width × width) is summed block by block and its eigenvectors taken, so that no float32
    copy of all the rows is made (100,000 photos: 0.8 GB, which scikit-learn's PCA and
    randomised SVD need)."""
    count, width = np.shape(features)
    dimensions = min(dimensions, width, count - 1)
    mean, std = standardisation(features)
    scale = 1.0 / std

    def blocks():
        for start in range(0, count, STANDARDISED_BLOCK):
            yield shifted_and_scaled(features[start : start + STANDARDISED_BLOCK], mean, scale)

    covariance = np.zeros((width, width))
    for block in blocks():
        covariance += block.T @ block
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    top = np.ascontiguousarray(vectors[:, ::-1][:, :dimensions], dtype=np.float32)
    return np.concatenate([block @ top for block in blocks()])


def nearest_by_cosine(units: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return each unit row's `count` nearest rows (itself included) by inner product, most
    similar first, as (similarities, indices).

    faiss's inverted-file index (IVF): the rows are grouped around √n centres (k-means), and
    each row is compared with the rows of its PROBED_LISTS nearest groups only, not with
    every row: about √n · PROBED_LISTS comparisons a row instead of n, so the search grows
    with n·√n, not n² (100,000 photos: about 30 times fewer). It is approximate: a neighbour
    in a group not probed is missed (a near-duplicate, nearly the same vector, sits in its
    twin's group). A row that finds fewer than `count` is searched exactly.
    """
    import faiss

    n, width = units.shape
    lists = max(1, int(np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(width)
    index = faiss.IndexIVFFlat(quantizer, width, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(units)
    index.add(units)
    index.nprobe = min(PROBED_LISTS, lists)
    similarities, indices = index.search(units, count)
    short = np.flatnonzero((indices < 0).any(axis=1))
    if len(short):
        exact = faiss.IndexFlatIP(width)
        exact.add(units)
        similarities[short], indices[short] = exact.search(units[short], count)
    return similarities, indices.astype(np.int64)


def _graph_without_self(distances: np.ndarray, indices: np.ndarray, k: int) -> csr_matrix:
    """Return the graph of each row's k nearest rows other than itself (a row may come
    second to an exact duplicate of it, at distance 0: that one stays, explicitly)."""
    from scipy.sparse import csr_matrix

    n = len(indices)
    mine = indices == np.arange(n)[:, None]
    # Drop each row's own entry (or, where it was not found among k + 1, the farthest).
    drop = np.where(mine.any(axis=1), mine.argmax(axis=1), k)
    keep = np.ones_like(mine)
    keep[np.arange(n), drop] = False
    data = np.maximum(distances[keep].reshape(n, k), 0.0)
    columns = indices[keep].reshape(n, k)
    graph = csr_matrix((data.ravel(), columns.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    return graph
