"""tf.data pipelines: photos decoded in parallel."""

from __future__ import annotations

import numpy as np

from flower_model.features.pipeline import image_dataset


def test_photo_batches_keep_file_order_with_autotuning_off(sample) -> None:
    records = sample.records[:5]
    dataset = image_dataset([sample.path_of(r) for r in records], batch_size=2)
    assert dataset.options().autotune.enabled is False
    batches = [b.numpy() for b in dataset]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert batches[0].shape[1:] == (224, 224, 3) and batches[0].dtype == np.uint8
    from flower_model.data.images import load_rgb

    np.testing.assert_array_equal(batches[2][0], load_rgb(sample.path_of(records[4]), size=224))
