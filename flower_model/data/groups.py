"""Duplicate photos grouped: the same bytes (by content hash) linked with the near-duplicates
found elsewhere (audit.near_duplicates); and the groups a split cuts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def connected(count: int, sets: Sequence[Sequence[int]]) -> list[list[int]]:
    """Return the groups of two or more indices that the sets link, directly or through
    others (a ~ b and b ~ c puts a, b and c in one group)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = [(i, int(j)) for i, members in enumerate(sets) for j in members]
    rows = np.array([i for i, _ in pairs], dtype=np.int64)
    cols = np.array([j for _, j in pairs], dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (rows, cols)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(component.tolist()):
        groups.setdefault(c, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


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
