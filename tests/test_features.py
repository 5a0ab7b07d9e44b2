"""The feature cache: what it returns equals ResNet50's features, and it spares ResNet50."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flower_model.backbone import INPUT_SIZE
from flower_model.extractor import FeatureExtractor
from flower_model.features import (
    FeatureCache,
    cache_key,
    dataset_features,
    extract_features,
    feature_sets,
)
from flower_model.images import load_rgb


@pytest.fixture(scope="module")
def extractor(resnet):
    """The feature extractor in float32 (BatchNorm folded)."""
    return FeatureExtractor(resnet, precision="float32")


def photos(sample, n: int = 4) -> list[Path]:
    return [sample.path_of(record) for record in sample.records[:: len(sample.records) // n][:n]]


def test_extract_features_from_files_matches_reference(
    sample, extractor, reference, fresh_home
) -> None:
    paths = photos(sample)
    records = sample.records[:: len(sample.records) // 4][:4]
    features, stats = extract_features(
        paths, [r.sha256 for r in records], extractor, FeatureCache("test")
    )
    resized = np.stack([load_rgb(p, size=INPUT_SIZE) for p in paths]).astype("float32")
    expected = reference(keras.applications.resnet50.preprocess_input(resized)).numpy()
    # The cache stores float16: three significant digits.
    np.testing.assert_allclose(features, expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())
    assert (stats.total, stats.cached, stats.computed) == (4, 0, 4)


def count_resnet_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_run = FeatureExtractor.run

    def counted(self, images):
        calls.append(len(images))
        return real_run(self, images)

    monkeypatch.setattr(FeatureExtractor, "run", counted)
    return calls


def test_second_extraction_reuses_cached_features(
    sample, extractor, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_resnet_calls(monkeypatch)
    records = sample.records[:12]
    args = ([sample.path_of(r) for r in records], [r.sha256 for r in records])
    cache = FeatureCache("reuse")
    first, stats = extract_features(*args, extractor, cache, batch_size=5)
    assert sum(calls) == 12 and stats.computed == 12
    calls.clear()
    second, stats = extract_features(*args, extractor, cache, batch_size=5)
    assert calls == [] and (stats.cached, stats.computed) == (12, 0)
    np.testing.assert_array_equal(first, second)


def test_corrupt_and_stale_cache_entries_are_rebuilt(
    sample, extractor, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample.records[:3]
    args = ([sample.path_of(r) for r in records], [r.sha256 for r in records])
    cache = FeatureCache("repair")
    good, _ = extract_features(*args, extractor, cache)
    cache._path(records[0].sha256).write_bytes(b"garbage, not numpy")
    np.save(cache._path(records[1].sha256), np.zeros(17, dtype=np.float16))  # wrong shape
    calls = count_resnet_calls(monkeypatch)
    again, stats = extract_features(*args, extractor, cache)
    assert sum(calls) == 2 and (stats.cached, stats.computed) == (1, 2)
    np.testing.assert_allclose(again, good, rtol=1e-3, atol=1e-3)
    assert not list(cache.folder.rglob("*.tmp*"))  # atomic writes leave nothing behind


def test_duplicate_photos_are_computed_once(sample, extractor, fresh_home, monkeypatch) -> None:
    record = sample.records[0]
    calls = count_resnet_calls(monkeypatch)
    features, stats = extract_features(
        [sample.path_of(record)] * 3,
        [record.sha256] * 3,
        extractor,
        FeatureCache("dups"),
    )
    assert sum(calls) == 1 and features.shape == (3, 2048)
    assert np.array_equal(features[0], features[2])


def test_cache_key_depends_on_weights_and_precision() -> None:
    assert cache_key("aaaa", "float32") != cache_key("bbbb", "float32")
    assert cache_key("aaaa", "float32") == cache_key("aaaa", "float32")
    assert cache_key("aaaa", "float32") != cache_key("aaaa", "bfloat16")


def test_large_values_are_stored_without_overflow(fresh_home) -> None:
    cache = FeatureCache("big")
    vector = np.full(2048, 1e6, dtype=np.float32)
    cache.put("ab" * 32, vector)
    np.testing.assert_array_equal(cache.get("ab" * 32), vector)


def test_feature_sets_find_every_namespace_holding_the_photos(sample, fresh_home) -> None:
    records = sample.records[:6]
    hashes = [r.sha256 for r in records]
    assert feature_sets(hashes) == []
    dataset_features(sample, "none", precision="float32")
    (only,) = feature_sets(hashes + ["f" * 64])
    assert only.found.tolist() == [True] * 6 + [False]
    assert "no transfer learning" in only.label and "6 of 7 photos" in only.label
    assert only.features.shape == (7, 2048) and not only.features[-1].any()
