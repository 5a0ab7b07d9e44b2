"""Duplicate groups: the same bytes, near-duplicates linked through one another, and leaks."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.audit.near_duplicates import near_duplicate_sets
from flower_model.data.groups import connected, duplicate_groups, exact_duplicate_sets, with_leaks


def test_exact_duplicates_are_the_photos_that_share_a_hash() -> None:
    assert exact_duplicate_sets(["a", "b", "a", "c", "b", "a"]) == [[0, 2, 5], [1, 4]]
    assert exact_duplicate_sets(["a", "b", "c"]) == []


def test_groups_link_photos_through_one_another() -> None:
    # 0 ~ 1 and 1 ~ 3 puts 0, 1 and 3 in one group although 0 and 3 were never paired.
    assert connected(5, [[1], [3], [], [], []]) == [[0, 1, 3]]
    assert connected(4, [[], [], [], []]) == []


def test_duplicate_groups_say_exact_or_near_and_conflicting_classes() -> None:
    paths = ["daisy/a.jpg", "rose/copy.jpg", "daisy/b.jpg", "daisy/b_small.jpg", "tulip/c.jpg"]
    hashes = ["h1", "h1", "h2", "h3", "h4"]
    labels = ["daisy", "rose", "daisy", "daisy", "tulip"]
    near = [[], [], [3], [2], []]
    pixels = [100, 100, 50, 80, 100]
    exact, similar = duplicate_groups(paths, hashes, labels, near, pixels)
    assert exact.paths == ("daisy/a.jpg", "rose/copy.jpg") and exact.exact and exact.conflicting
    assert not similar.exact and not similar.conflicting
    # The photo worth keeping first: the most pixels, whatever the name.
    assert similar.paths == ("daisy/b_small.jpg", "daisy/b.jpg")


def test_a_group_on_both_sides_of_a_split_is_a_leak() -> None:
    groups = duplicate_groups(["a", "b", "c", "d"], ["1", "1", "2", "2"], ["x"] * 4)
    marked = with_leaks(groups, train=["a", "c", "d"], val=["b"])
    assert [(g.paths, g.leak) for g in marked] == [(("a", "b"), True), (("c", "d"), False)]


def test_near_duplicates_are_found_by_their_features_and_distinct_photos_are_not() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 64)).astype(np.float32)
    features[7] = features[3] + rng.normal(scale=1e-3, size=64)  # the same picture, re-encoded
    sets = near_duplicate_sets(features)
    assert sets[3] == [7] and sets[7] == [3]
    assert sum(len(s) for s in sets) == 2


def test_a_search_done_before_on_the_same_features_is_not_done_again(
    fresh_home, monkeypatch
) -> None:
    from flower_model.audit import datalab

    rng = np.random.default_rng(1)
    features = rng.normal(size=(30, 16)).astype(np.float32)
    features[5] = features[2]
    hashes = [f"h{i}" for i in range(30)]
    first = near_duplicate_sets(features, known_as=("key", hashes))
    assert first[2] == [5]
    monkeypatch.setattr(datalab, "find_issues", lambda *a, **k: pytest.fail("searched again"))
    assert near_duplicate_sets(features, known_as=("key", hashes)) == first
    monkeypatch.undo()
    # Other photos, or the same photos' features from other weights: searched anew.
    other = near_duplicate_sets(features[::-1].copy(), known_as=("key", hashes[::-1]))
    assert other[27] == [24]
    assert near_duplicate_sets(features, known_as=("other key", hashes)) == first
