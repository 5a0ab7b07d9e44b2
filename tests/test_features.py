"""Features: ResNet50's own preprocessing exactly once, and a cache that spares the backbone."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flower_model.backbone import INPUT_SIZE
from flower_model.features import Backbone, FeatureCache, cache_key, extract_features
from flower_model.images import load_rgb


@pytest.fixture(scope="module")
def backbone(resnet):
    """The feature extractor in float32 (BatchNorm folded): what the equivalence tests check."""
    return Backbone(resnet, precision="float32")


@pytest.fixture(scope="module")
def reference(resnet):
    """The textbook feature extractor: ResNet50(include_top=False, pooling='avg')."""
    model = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3)
    )
    model.set_weights(resnet.get_weights())
    return model


def photos(sample, n: int = 4) -> list[Path]:
    return [sample.path_of(record) for record in sample.records[:: len(sample.records) // n][:n]]


def test_pipeline_features_equal_resnet50_on_preprocessed_resized_images(
    sample, backbone, reference
) -> None:
    paths = photos(sample)
    resized = np.stack([load_rgb(p, size=INPUT_SIZE) for p in paths])
    expected = reference(
        keras.applications.resnet50.preprocess_input(resized.astype("float32")), training=False
    ).numpy()
    got = backbone.run(resized)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * scale)
    # A pipeline that preprocessed twice, or not at all, would be far off: the check has teeth.
    twice = reference(
        keras.applications.resnet50.preprocess_input(
            keras.applications.resnet50.preprocess_input(resized.astype("float32"))
        )
    ).numpy()
    raw = reference(resized.astype("float32")).numpy()
    for wrong in (twice, raw):
        assert np.abs(wrong - expected).max() > 100 * (1e-3 * scale)


def test_extract_features_from_files_matches_reference(
    sample, backbone, reference, fresh_home
) -> None:
    paths = photos(sample)
    records = sample.records[:: len(sample.records) // 4][:4]
    features, stats = extract_features(
        paths, [r.sha256 for r in records], backbone, FeatureCache("test")
    )
    resized = np.stack([load_rgb(p, size=INPUT_SIZE) for p in paths]).astype("float32")
    expected = reference(keras.applications.resnet50.preprocess_input(resized)).numpy()
    # The cache stores float16: three significant digits.
    np.testing.assert_allclose(features, expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())
    assert (stats.total, stats.cached, stats.computed) == (4, 0, 4)


def count_backbone_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_run = Backbone.run

    def counted(self, images):
        calls.append(len(images))
        return real_run(self, images)

    monkeypatch.setattr(Backbone, "run", counted)
    return calls


def test_second_extraction_reuses_cached_features(
    sample, backbone, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_backbone_calls(monkeypatch)
    records = sample.records[:12]
    args = ([sample.path_of(r) for r in records], [r.sha256 for r in records])
    cache = FeatureCache("reuse")
    first, stats = extract_features(*args, backbone, cache, batch_size=5)
    assert sum(calls) == 12 and stats.computed == 12
    calls.clear()
    second, stats = extract_features(*args, backbone, cache, batch_size=5)
    assert calls == [] and (stats.cached, stats.computed) == (12, 0)
    np.testing.assert_array_equal(first, second)


def test_corrupt_and_stale_cache_entries_are_rebuilt(
    sample, backbone, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = sample.records[:3]
    args = ([sample.path_of(r) for r in records], [r.sha256 for r in records])
    cache = FeatureCache("repair")
    good, _ = extract_features(*args, backbone, cache)
    cache._path(records[0].sha256).write_bytes(b"garbage, not numpy")
    np.save(cache._path(records[1].sha256), np.zeros(17, dtype=np.float16))  # wrong shape
    calls = count_backbone_calls(monkeypatch)
    again, stats = extract_features(*args, backbone, cache)
    assert sum(calls) == 2 and (stats.cached, stats.computed) == (1, 2)
    np.testing.assert_allclose(again, good, rtol=1e-3, atol=1e-3)
    assert not list(cache.folder.rglob("*.tmp*"))  # atomic writes leave nothing behind


def test_duplicate_photos_are_computed_once(sample, backbone, fresh_home, monkeypatch) -> None:
    record = sample.records[0]
    calls = count_backbone_calls(monkeypatch)
    features, stats = extract_features(
        [sample.path_of(record)] * 3,
        [record.sha256] * 3,
        backbone,
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
