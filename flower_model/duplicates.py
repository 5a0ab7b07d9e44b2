"""Duplicate photos: the same bytes (by content hash), or the same picture resized or
re-encoded (by ResNet50 features, through cleanlab), grouped; and the groups a split cuts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_model import workspace

# cleanlab's own default: a photo is a near-duplicate of a neighbour closer than this share of
# the median distance between photos and their nearest neighbours (cosine, on standardised
# features). Measured on the generated set of tests/test_audit.py with random weights: copies
# resized to 80–95 % and saved again at JPEG quality 75 score 0.05–0.10, the closest distinct
# photos 0.24 and more.
NEAR_DUPLICATE_THRESHOLD = 0.13


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that are one picture: the same bytes, or near-duplicates by their features."""

    paths: tuple[str, ...]  # the one to keep first: the most pixels, then the shortest name
    exact: bool  # every member has the same bytes
    labels: tuple[str, ...]  # the class each member is filed under
    leak: bool = False  # a split put members on both sides

    @property
    def conflicting(self) -> bool:
        """Return whether members are filed under different classes."""
        return len(set(self.labels)) > 1


def exact_duplicate_sets(hashes: Sequence[str]) -> list[list[int]]:
    """Return the indices of photos sharing their content hash, in sets of two or more."""
    by_hash: dict[str, list[int]] = {}
    for i, sha in enumerate(hashes):
        by_hash.setdefault(sha, []).append(i)
    return [members for members in by_hash.values() if len(members) > 1]


def near_duplicate_sets(
    features: np.ndarray, known_as: tuple[str, Sequence[str]] | None = None
) -> list[list[int]]:
    """Return, for each photo, the photos cleanlab finds to be its near-duplicates.

    `known_as` (the feature-cache key and each row's content hash) names the features: the
    answer is then kept in the workspace, and the same photos with the same features are not
    searched again (on 4,317 photos the search and cleanlab's import take 2.5 s, measured).
    """
    from flower_model.datalab import find_issues

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
        workspace.write_atomic(kept, json.dumps(sets))
    return sets


def _kept_sets_file(cache_key: str, hashes: Sequence[str]) -> Path:
    text = f"{cache_key}|{NEAR_DUPLICATE_THRESHOLD}|" + ",".join(hashes)
    name = hashlib.sha256(text.encode()).hexdigest()[:24]
    return workspace.near_duplicates_dir() / f"{name}.json"


def connected(count: int, sets: Sequence[Sequence[int]]) -> list[list[int]]:
    """Return the groups of two or more indices that the sets link, directly or through
    others (a ~ b and b ~ c puts a, b and c in one group)."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, members in enumerate(sets):
        for j in members:
            parent[root(int(j))] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def duplicate_groups(
    paths: Sequence[str],
    hashes: Sequence[str],
    labels: Sequence[str],
    near: Sequence[Sequence[int]] = (),
    pixels: Sequence[int] | None = None,
) -> tuple[DuplicateGroup, ...]:
    """Return the groups of photos that are one picture: exact copies by hash, linked with
    the near-duplicate sets given (one per photo), largest first. In each group the photo
    worth keeping comes first: the one with the most pixels, then the shortest name (a
    copy's name is usually the original's and more)."""
    exact = exact_duplicate_sets(hashes)
    linked: list[list[int]] = [[] for _ in paths]
    for members in exact:
        linked[members[0]].extend(members[1:])
    for i, members in enumerate(near):
        linked[i].extend(members)
    groups = []
    for members in connected(len(paths), linked):
        members = sorted(
            members, key=lambda i: (-(pixels[i] if pixels else 0), len(paths[i]), paths[i])
        )
        groups.append(
            DuplicateGroup(
                paths=tuple(paths[i] for i in members),
                exact=len({hashes[i] for i in members}) == 1,
                labels=tuple(labels[i] for i in members),
            )
        )
    return tuple(sorted(groups, key=lambda g: (-len(g.paths), not g.exact, g.paths)))


def with_leaks(
    groups: Sequence[DuplicateGroup], train: Sequence[str], val: Sequence[str]
) -> tuple[DuplicateGroup, ...]:
    """Return the groups, each marked a leak when the split puts members on both sides."""
    in_train, in_val = set(train), set(val)
    return tuple(
        DuplicateGroup(
            g.paths,
            g.exact,
            g.labels,
            leak=any(p in in_train for p in g.paths) and any(p in in_val for p in g.paths),
        )
        for g in groups
    )
