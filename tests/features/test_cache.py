"""The feature cache: what it returns equals ResNet50's features, and it spares ResNet50."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flower_model.data.images import load_rgb
from flower_model.features import cache as features_module
from flower_model.features.cache import FeatureCache, cache_key, feature_sets
from flower_model.features.extraction import dataset_features, extract_features, needs_extraction
from flower_model.features.extractor import FeatureExtractor
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


def test_feature_sets_find_every_namespace_holding_the_photos(sample, fresh_home, resnet) -> None:
    records = sample.records[:6]
    hashes = [r.sha256 for r in records]
    assert feature_sets(hashes) == []
    with built_once(resnet):
        dataset_features(sample, "none", precision="float32")
    (only,) = feature_sets(hashes + ["f" * 64])
    assert only.found.tolist() == [True] * 6 + [False]
    assert "no transfer learning" in only.label and "6 of 7 photos" in only.label
    assert only.features.shape == (7, 2048) and not only.features[-1].any()


def stored(cache: FeatureCache, count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Return the hashes of `count` photos whose features are in the cache, and the features
    as the cache returns them (stored in float16; one photo's in float32)."""
    rng = np.random.default_rng(seed)
    hashes = [f"{seed:02d}{i:062x}" for i in range(count)]
    rows = rng.normal(0.0, 2.0, (count, 2048)).astype(np.float32)
    rows[0, 0] = 1e6  # stored in float32: the pack must keep it
    return hashes, np.stack([cache.put(sha, row) for sha, row in zip(hashes, rows, strict=True)])


def test_a_list_of_photos_read_whole_is_then_read_from_its_pack(
    fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(features_module, "PACK_MIN_PHOTOS", 3)
    cache = FeatureCache("packed")
    hashes, rows = stored(cache, 5)
    features, found = cache.get_many(hashes)
    assert found.all()
    np.testing.assert_array_equal(features, rows)
    (pack,) = (cache.folder / features_module.PACKS_FOLDER).iterdir()

    def unread(sha: str) -> None:
        raise AssertionError("a photo's own file was read")

    monkeypatch.setattr(cache, "get", unread)
    again, found = cache.get_many(hashes)
    assert found.all() and again.dtype == np.float32
    np.testing.assert_array_equal(again, rows)  # float16 and float32 rows alike
    assert cache.may_hold_all(hashes)
    # Another order is another list of rows: not the pack's.
    monkeypatch.undo()
    monkeypatch.setattr(features_module, "PACK_MIN_PHOTOS", 3)
    reordered, _ = cache.get_many(hashes[::-1])
    np.testing.assert_array_equal(reordered, rows[::-1])
    # A corrupt pack is dropped, and the photos' own files answer.
    pack.write_bytes(b"not a pack")
    features, found = cache.get_many(hashes)
    assert found.all()
    np.testing.assert_array_equal(features, rows)


def test_no_pack_for_a_partial_list_and_only_the_newest_packs_are_kept(
    fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(features_module, "PACK_MIN_PHOTOS", 2)
    cache = FeatureCache("packs")
    hashes, _ = stored(cache, 8)
    packs = cache.folder / features_module.PACKS_FOLDER
    _, found = cache.get_many([*hashes[:3], "f" * 64])
    assert not found[-1] and not packs.exists()
    for start in range(features_module.PACKS_KEPT + 2):
        cache.get_many(hashes[start : start + 3])
    assert len(list(packs.iterdir())) == features_module.PACKS_KEPT
    assert cache.bytes_used() == sum(p.stat().st_size for p in cache.folder.glob("*/*.npy"))


def test_needs_extraction_until_every_photo_is_cached(sample, fresh_home, resnet) -> None:
    assert needs_extraction(sample, "none")  # weights never built here: nothing is known
    with built_once(resnet):
        dataset_features(sample, "none", precision="float32")
    assert not needs_extraction(sample, "none", precision="float32")
    assert needs_extraction(sample, "none", seed=7, precision="float32")  # other weights
