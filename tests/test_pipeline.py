"""tf.data pipelines: cached features batched from memory, photos decoded in parallel."""

from __future__ import annotations

import numpy as np

from flower_model.pipeline import feature_dataset, image_dataset


def epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_feature_batches_cover_every_row_once_and_reshuffle_each_epoch() -> None:
    features = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    labels = np.arange(50) % 5
    dataset = feature_dataset(features, labels, batch_size=8, shuffle_seed=3)
    first, first_labels = epoch(dataset)
    second, _ = epoch(dataset)
    assert [len(x) for x, _ in dataset] == [8] * 6 + [2]
    # Every row once, with its own label, in a new order each epoch.
    assert sorted(first[:, 0].tolist()) == sorted(features[:, 0].tolist())
    np.testing.assert_array_equal(first_labels, (first[:, 0] // 4).astype(int) % 5)
    assert not np.array_equal(first, second) and not np.array_equal(first, features)
    # The same seed gives the same order: a run can be repeated.
    again, _ = epoch(feature_dataset(features, labels, batch_size=8, shuffle_seed=3))
    np.testing.assert_array_equal(again, first)


def test_unshuffled_feature_batches_keep_the_order() -> None:
    features = np.eye(6, dtype=np.float32)
    x, y = epoch(feature_dataset(features, np.arange(6), batch_size=4))
    np.testing.assert_array_equal(x, features)
    np.testing.assert_array_equal(y, np.arange(6))


def test_photo_batches_keep_file_order_with_autotuning_off(sample) -> None:
    records = sample.records[:5]
    dataset = image_dataset([sample.path_of(r) for r in records], batch_size=2)
    assert dataset.options().autotune.enabled is False
    batches = [b.numpy() for b in dataset]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert batches[0].shape[1:] == (224, 224, 3) and batches[0].dtype == np.uint8
    from flower_model.images import load_rgb

    np.testing.assert_array_equal(batches[2][0], load_rgb(sample.path_of(records[4]), size=224))
