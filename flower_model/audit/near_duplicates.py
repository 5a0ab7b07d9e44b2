"""Near-duplicate photos: the same picture resized or re-encoded, found by their ResNet50
features through cleanlab, and remembered in the workspace."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flower_model.core import workspace

# cleanlab's own default: a photo is a near-duplicate of a neighbour closer than this share of
# the median distance between photos and their nearest neighbours (cosine, on standardised
# features). Measured on the generated set of tests/audit/test_findings.py with random
# weights: copies resized to 80–95 % and saved again at JPEG quality 75 score 0.05–0.10, the
# closest distinct photos 0.24 and more.
NEAR_DUPLICATE_THRESHOLD = 0.13


def near_duplicate_sets(
    features: np.ndarray, known_as: tuple[str, Sequence[str]] | None = None
) -> list[list[int]]:
    """Return, for each photo, the photos cleanlab finds to be its near-duplicates.

    `known_as` (the feature-cache key and each row's content hash) names the features: the
    answer is then kept in the workspace, and the same photos with the same features are not
    searched again (on 4,317 photos the search and cleanlab's import take 2.5 s, measured).
    """
    from flower_model.audit.datalab import find_issues

    if len(features) < 3:
        return [[] for _ in range(len(features))]
    kept = _kept_sets_file(*known_as) if known_as is not None else None
    if kept is not None:
        try:
            sets = json.loads(kept.read_text())
            if isinstance(sets, list) and len(sets) == len(features):
                return [list(map(int, s)) for s in sets]
        except (OSError, ValueError, TypeError):
            pass
    lab = find_issues(features, {"near_duplicate": {"threshold": NEAR_DUPLICATE_THRESHOLD}})
    sets = [list(map(int, s)) for s in lab.get_info("near_duplicate")["near_duplicate_sets"]]
    if kept is not None:
        workspace.write_cache(kept, json.dumps(sets), "the near-duplicates found")
    return sets


def _kept_sets_file(cache_key: str, hashes: Sequence[str]) -> Path:
    text = f"{cache_key}|{NEAR_DUPLICATE_THRESHOLD}|" + ",".join(hashes)
    name = hashlib.sha256(text.encode()).hexdigest()[:24]
    return workspace.near_duplicates_dir() / f"{name}.json"
