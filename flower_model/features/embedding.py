"""Project 2048-d ResNet50 features to 2-D for a map of the dataset."""

from __future__ import annotations

import numpy as np

METHODS = ("PCA", "t-SNE")


def project(features: np.ndarray, method: str = "PCA", seed: int = 0) -> np.ndarray:
    """Return an (N, 2) projection of (N, D) features by PCA or t-SNE."""
    if len(features) < 3:
        raise ValueError("a map needs features of at least three photos")
    centred = features.astype(np.float64) - features.mean(axis=0)
    if method == "PCA":
        # The top two right-singular vectors are the principal axes.
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
        points = centred @ axes[:2].T
        # Fix the sign so the same data always gives the same picture.
        signs = np.sign(points[np.abs(points).argmax(axis=0), [0, 1]])
        return points * np.where(signs == 0, 1, signs)
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        # PCA to 50 dimensions first: faster, and the usual advice for t-SNE.
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
        reduced = centred @ axes[: min(50, len(axes))].T
        perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not '{method}'")
