"""The feature cache: what it returns equals ResNet50's features, and it spares ResNet50."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flower_model.core.errors import TrainingCancelled
from flower_model.data.images import load_rgb
from flower_model.features.cache import FeatureCache, cache_key, feature_sets
from flower_model.features.compute import extract_features
from flower_model.features.extraction import dataset_features, needs_extraction
from flower_model.features.extractor import FeatureExtractor
from flower_model.features.store import forget_indexes
from flower_model.model.backbone import INPUT_SIZE
from tests.conftest import built_once


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


def paths_and_hashes(sample, records) -> tuple[list[Path], list[str]]:
    """Return the photos' paths and content hashes, as `extract_features` takes them."""
    return [sample.path_of(r) for r in records], [r.sha256 for r in records]


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
    args = paths_and_hashes(sample, records)
    cache = FeatureCache("reuse")
    first, stats = extract_features(*args, extractor, cache, batch_size=5)
    assert sum(calls) == 12 and stats.computed == 12
    calls.clear()
    second, stats = extract_features(*args, extractor, cache, batch_size=5)
    assert calls == [] and (stats.cached, stats.computed) == (12, 0)
    np.testing.assert_array_equal(first, second)


def test_a_damaged_store_loses_only_the_damaged_rows(
    sample, extractor, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample.records[:3]
    args = paths_and_hashes(sample, records)
    cache = FeatureCache("repair")
    good, _ = extract_features(*args, extractor, cache)
    (rows,) = cache.store.folder.glob("*.f16")
    # The last row cut short (a disk filled up), the first overwritten with NaNs.
    with rows.open("r+b") as file:
        file.truncate(rows.stat().st_size - 100)
        file.seek(0)
        file.write(np.full(2048, np.nan, dtype=np.float16).tobytes())
    forget_indexes()
    calls = count_resnet_calls(monkeypatch)
    again, stats = extract_features(*args, extractor, cache)
    assert sum(calls) == 2 and (stats.cached, stats.computed) == (1, 2)
    np.testing.assert_array_equal(again[1], good[1])
    np.testing.assert_allclose(again, good, rtol=1e-3, atol=1e-3)


def test_a_stopped_extraction_goes_on_where_it_stopped(
    sample, extractor, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample.records[:10]
    args = paths_and_hashes(sample, records)
    cache = FeatureCache("resume")
    calls = count_resnet_calls(monkeypatch)
    with pytest.raises(TrainingCancelled):
        extract_features(*args, extractor, cache, batch_size=4, cancelled=lambda: len(calls) == 2)
    assert calls == [4, 4] and cache.count() == 8
    calls.clear()
    _, stats = extract_features(*args, extractor, cache, batch_size=4)
    assert calls == [2] and (stats.cached, stats.computed) == (8, 2)


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


def test_feature_sets_find_every_namespace_holding_the_photos(sample, fresh_home, resnet) -> None:
    records = sample.records[:6]
    hashes = [r.sha256 for r in records]
    assert feature_sets(hashes) == []
    with built_once(resnet):
        dataset_features(sample, "none", precision="float32")
    (only,) = feature_sets(hashes + ["f" * 64])
    assert only.found.tolist() == [True] * 6 + [False]
    assert "no transfer learning" in only.label and "6 of 7 photos" in only.label
    features, found = only.cache.get_many(hashes + ["f" * 64])
    assert features.shape == (7, 2048) and not features[-1].any() and found[:6].all()


def stored(cache: FeatureCache, count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Return the hashes of `count` photos whose features are in the cache, and the features
    as the cache returns them (stored in float16; one photo's in float32)."""
    rng = np.random.default_rng(seed)
    hashes = [f"{seed:02d}{i:062x}" for i in range(count)]
    rows = rng.normal(0.0, 2.0, (count, 2048)).astype(np.float32)
    rows[0, 0] = 1e6  # too large for float16: stored in float32
    return hashes, cache.put_many(hashes, rows)


def test_features_are_read_back_as_one_array_in_any_order(fresh_home) -> None:
    cache = FeatureCache("many")
    hashes, rows = stored(cache, 50)
    assert rows[0, 0] == 1e6 and rows.dtype == np.float32
    features, found = cache.get_many([*hashes[::-1], "f" * 64])
    assert found.tolist() == [True] * 50 + [False]
    np.testing.assert_array_equal(features[:50], rows[::-1])
    assert not features[50].any()
    halves, _ = cache.get_many(hashes, dtype=np.float16)
    assert halves.dtype == np.float16
    np.testing.assert_array_equal(halves[1:], rows[1:].astype(np.float16))
    # A photo stored again keeps its first row; the store grows by new photos only.
    before = cache.bytes_used()
    again = cache.put_many(hashes[:5], np.zeros((5, 2048)))
    assert cache.bytes_used() == before and cache.count() == 50
    np.testing.assert_array_equal(cache.get_many(hashes[:5])[0], rows[:5])
    assert again.shape == (5, 2048)
    # On disk: the float16 features and a 32-byte key per photo, nothing else.
    float16_bytes = 49 * 2048 * 2
    assert before == float16_bytes + 2048 * 4 + 50 * 32


def test_a_cache_written_before_the_store_is_moved_into_it(fresh_home) -> None:
    cache = FeatureCache("old")
    rows = np.random.default_rng(3).normal(size=(3, 2048)).astype(np.float16)
    hashes = [f"{i:064x}" for i in range(3)]
    for sha, row in zip(hashes, rows, strict=True):
        path = cache.folder / sha[:2] / f"{sha}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, row)
    (cache.folder / "ff").mkdir()
    (cache.folder / "ff" / f"{'f' * 64}.npy").write_bytes(b"damaged")
    (cache.folder / "packs").mkdir()
    (cache.folder / "packs" / "a.pack").write_bytes(b"an old copy")
    features, found = cache.get_many(hashes)
    assert found.all()
    np.testing.assert_array_equal(features, rows.astype(np.float32))
    assert sorted(p.name for p in cache.folder.iterdir()) == ["rows"]
    assert cache.count() == 3


def test_needs_extraction_until_every_photo_is_cached(sample, fresh_home, resnet) -> None:
    assert needs_extraction(sample, "none")  # weights never built here: nothing is known
    with built_once(resnet):
        dataset_features(sample, "none", precision="float32")
    assert not needs_extraction(sample, "none", precision="float32")
    assert needs_extraction(sample, "none", seed=7, precision="float32")  # other weights
