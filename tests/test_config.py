"""Settings: one set of defaults, and one resolver of what the settings leave open."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from flower_model.backbone import WEIGHTS_ENV
from flower_model.config import (
    DEFAULT_LEARNING_RATE,
    TrainConfig,
    default_of,
    help_of,
    resolve_config,
)
from flower_model.errors import WeightsError


@pytest.fixture(autouse=True)
def no_imagenet_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def test_the_learning_rate_follows_the_weights_actually_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file here: 'imagenet' still means ImageNet (Keras downloads it when online).
    resolved = resolve_config(TrainConfig(weights="imagenet"))
    assert resolved.weights.transfer_learning
    assert resolved.learning_rate == DEFAULT_LEARNING_RATE["features"]
    assert (
        resolve_config(TrainConfig(weights="none")).learning_rate
        == (DEFAULT_LEARNING_RATE["features-random"])
    )
    # $FLOWER_LENS_WEIGHTS=none turns 'imagenet' into random weights: their rate follows.
    monkeypatch.setenv(WEIGHTS_ENV, "none")
    resolved = resolve_config(TrainConfig(weights="imagenet"))
    assert not resolved.weights.transfer_learning
    assert resolved.learning_rate == DEFAULT_LEARNING_RATE["features-random"]
    assert (
        resolve_config(TrainConfig(mode="finetune")).learning_rate
        == (DEFAULT_LEARNING_RATE["finetune"])
    )
    # A rate given is kept, and the resolved config records it.
    resolved = resolve_config(TrainConfig(weights="none", learning_rate=0.5))
    assert resolved.learning_rate == 0.5 and resolved.config.learning_rate == 0.5


def test_a_missing_weights_file_is_refused_when_resolved(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_config(TrainConfig(weights=str(tmp_path / "missing.h5")))


def test_every_setting_has_one_default_and_a_help_text() -> None:
    config = TrainConfig()
    for setting in fields(TrainConfig):
        assert default_of(setting.name) == getattr(config, setting.name)
        assert len(help_of(setting.name)) > 20


def test_stored_settings_load_even_with_keys_this_version_does_not_know() -> None:
    stored = {**TrainConfig(epochs=7).to_json(), "from_the_future": True}
    assert TrainConfig.from_json(stored) == TrainConfig(epochs=7)
