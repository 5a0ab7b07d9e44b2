"""Computing the features a cache lacks: photos decoded in batches, run through an extractor,
each batch stored at once (a Stop, a crash or a restart goes on from there)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import TrainingCancelled
from flower_model.features.cache import ExtractionStats, FeatureCache

if TYPE_CHECKING:
    from flower_model.features.extractor import FeatureExtractor

Progress = Callable[[int, int], None]


def extract_features(
    paths: Sequence[Path],
    hashes: Sequence[str],
    extractor: FeatureExtractor,
    cache: FeatureCache,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, ExtractionStats]:
    """Return features for every image, computing only those not in the cache."""
    from flower_model.features.pipeline import image_dataset

    start = time.perf_counter()
    unique = list(dict.fromkeys(hashes))
    features, held = cache.get_many(unique)
    row_of = {sha: i for i, sha in enumerate(unique)}
    todo: dict[str, Path] = {}
    for path, sha in zip(paths, hashes, strict=True):
        if not held[row_of[sha]]:
            todo.setdefault(sha, Path(path))
    total = len(unique)
    if progress is not None:
        progress(total - len(todo), total)
    if todo:
        shas = list(todo)
        batches = image_dataset([todo[s] for s in shas], batch_size=batch_size)
        done = 0
        for images in batches:
            if cancelled is not None and cancelled():
                raise TrainingCancelled("stopped while extracting features")
            vectors = extractor.run(images)
            batch = shas[done : done + len(vectors)]
            # Kept at once, so that a Stop, a crash or a restart goes on from here; and what
            # the cache holds is returned, so a first and a second run see the same numbers.
            stored = cache.put_many(batch, np.asarray(vectors))
            features[[row_of[sha] for sha in batch]] = stored
            done += len(vectors)
            if progress is not None:
                progress(total - len(todo) + done, total)
    if len(unique) != len(hashes):
        features = features[[row_of[sha] for sha in hashes]]
    stats = ExtractionStats(
        total=len(hashes),
        cached=len(hashes) - sum(1 for sha in hashes if sha in todo),
        computed=len(todo),
        seconds=time.perf_counter() - start,
        precision=extractor.precision,
    )
    return features, stats
