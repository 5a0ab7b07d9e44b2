"""The fast backbone: BatchNorm folded exactly, bfloat16 only where it agrees with float32."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from flower_model import inference
from flower_model.backbone import INPUT_SIZE, preprocess
from flower_model.features import Backbone
from flower_model.images import load_rgb
from flower_model.train import TrainConfig


@pytest.fixture(scope="module")
def photos(sample) -> np.ndarray:
    step = len(sample.records) // 6
    return np.stack(
        [load_rgb(sample.path_of(r), size=INPUT_SIZE) for r in sample.records[::step][:6]]
    )


@pytest.fixture(scope="module")
def float32_features(resnet, photos) -> np.ndarray:
    """The unfolded network's pooled features, in float32."""
    maps = resnet(preprocess(photos), training=False).numpy()
    return maps.mean(axis=(1, 2))


def test_folded_network_has_no_batch_norm_and_computes_the_same(resnet, photos) -> None:
    folded = inference.fold_batch_norm(resnet)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in resnet.layers) == 53
    expected = resnet(preprocess(photos), training=False).numpy()
    got = folded(preprocess(photos), training=False).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # The original is untouched: its BatchNorm layers still hold their statistics.
    assert resnet.get_layer("conv1_bn").moving_variance.numpy().min() > 0


def test_bfloat16_backbone_computes_in_bfloat16_close_to_float32(
    resnet, photos, float32_features
) -> None:
    fast = Backbone(resnet, precision="bfloat16")
    assert fast.model.get_layer("resnet50").get_layer("conv1_conv").compute_dtype == "bfloat16"
    features = fast.run(photos)
    assert features.dtype == np.float32 and features.shape == (len(photos), 2048)
    cosine = inference.cosine_similarity(features, float32_features)
    assert cosine.min() >= inference.MIN_BF16_COSINE
    # It really is another arithmetic: further from float32 than float32's own tolerance.
    assert np.abs(features - float32_features).max() > 1e-5 * np.abs(float32_features).max()


def test_auto_picks_bfloat16_on_a_bf16_cpu_and_remembers_the_check(
    resnet, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: True)
    backbone = Backbone.create(resnet, "auto")
    assert backbone.precision == "bfloat16"
    cosine = inference.recorded_cosine(backbone.identity)
    assert cosine is not None and cosine >= inference.MIN_BF16_COSINE
    # Once checked, it is not checked again: no float32 backbone is built.
    built: list[str] = []
    real_init = Backbone.__init__

    def counting(self, resnet, precision="float32", identity=None):
        built.append(precision)
        real_init(self, resnet, precision, identity)

    monkeypatch.setattr(Backbone, "__init__", counting)
    assert Backbone.create(resnet, "auto").precision == "bfloat16"
    assert built == ["bfloat16"]


def test_auto_keeps_float32_when_bfloat16_disagrees_or_the_cpu_lacks_it(
    resnet, fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(inference, "MIN_BF16_COSINE", 1.01)  # no arithmetic can agree this well
    assert Backbone.create(resnet, "auto").precision == "float32"
    assert Backbone.create(resnet, "auto").precision == "float32"  # from the recorded check
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(inference, "MIN_BF16_COSINE", 0.999)
    assert Backbone.create(resnet, "auto").precision == "float32"
    assert Backbone.create(resnet, "bfloat16").precision == "bfloat16"  # asked for: given


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    assert inference.cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not inference.cpu_has_bf16(cpuinfo)
    assert not inference.cpu_has_bf16(tmp_path / "missing")


def test_a_corrupt_record_of_checks_is_ignored(fresh_home) -> None:
    inference.record_cosine("abc", 0.9995)
    assert inference.recorded_cosine("abc") == pytest.approx(0.9995)
    (fresh_home / inference.VERDICTS_FILE).write_text("{not json")
    assert inference.recorded_cosine("abc") is None
    inference.record_cosine("abc", 0.99)
    assert inference.recorded_cosine("abc") == pytest.approx(0.99)


def test_unknown_precisions_are_refused(resnet) -> None:
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float8")
    with pytest.raises(ValueError, match="precision"):
        Backbone.create(resnet, "half")
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        Backbone(resnet, precision="auto")


def test_cosine_similarity_of_rows() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, -1.0], [0.0, 0.0]])
    np.testing.assert_allclose(inference.cosine_similarity(a, b), [1.0, 0.0, 1.0])


def test_networks_that_folding_would_change_are_refused() -> None:
    def conv_net(*, activation: str = "linear", shared: bool = False) -> keras.Model:
        image = keras.Input((8, 8, 3))
        conv = keras.layers.Conv2D(4, 3, activation=activation)(image)
        normed = keras.layers.BatchNormalization()(conv)
        out = keras.layers.Add()([normed, conv]) if shared else normed
        return keras.Model(image, out)

    folded = inference.fold_batch_norm(conv_net())
    assert not any(isinstance(x, keras.layers.BatchNormalization) for x in folded.layers)
    with pytest.raises(ValueError, match="activation"):
        inference.fold_batch_norm(conv_net(activation="relu"))
    with pytest.raises(ValueError, match="feeds more than"):
        inference.fold_batch_norm(conv_net(shared=True))
    image = keras.Input((8, 8, 3))
    dense = keras.layers.BatchNormalization()(keras.layers.Dense(4)(image))
    with pytest.raises(ValueError, match="does not follow a convolution"):
        inference.fold_batch_norm(keras.Model(image, dense))
