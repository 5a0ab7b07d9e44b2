"""Settings: one set of defaults, and one resolver of what the settings leave open."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from flower_model.core.errors import WeightsError
from flower_model.model.backbone import WEIGHTS_ENV
from flower_model.model.config import TrainConfig, default_of, help_of, resolve_config


@pytest.fixture(autouse=True)
def no_imagenet_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def test_weights_are_resolved_once_for_what_this_machine_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file here: 'imagenet' still means ImageNet (Keras downloads it when online).
    resolved = resolve_config(TrainConfig(weights="imagenet"))
    assert resolved.weights.transfer_learning and resolved.weights.path is None
    assert not resolve_config(TrainConfig(weights="none")).weights.transfer_learning
    # $FLOWER_LENS_WEIGHTS=none turns 'imagenet' into random weights, labelled as such.
    monkeypatch.setenv(WEIGHTS_ENV, "none")
    resolved = resolve_config(TrainConfig(weights="imagenet"))
    assert not resolved.weights.transfer_learning
    assert "no transfer learning" in resolved.weights.label
    # A file named by the variable is the ImageNet file.
    named = tmp_path / "w.h5"
    named.write_bytes(b"h5")
    monkeypatch.setenv(WEIGHTS_ENV, str(named))
    assert resolve_config(TrainConfig()).weights.path == named


def test_a_missing_weights_file_is_refused_when_resolved(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_config(TrainConfig(weights=str(tmp_path / "missing.h5")))


def test_every_setting_has_one_default_and_a_help_text() -> None:
    config = TrainConfig()
    for setting in fields(TrainConfig):
        assert default_of(setting.name) == getattr(config, setting.name)
        assert len(help_of(setting.name)) > 15


@pytest.mark.parametrize("field", ["learning_rate", "fine_tune_learning_rate"])
@pytest.mark.parametrize("value", [0.0, -1e-3, float("inf"), float("nan")])
def test_learning_rates_must_be_positive_numbers(field: str, value: float) -> None:
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        TrainConfig(**{field: value})


def test_stored_settings_load_even_with_keys_this_version_does_not_know() -> None:
    stored = {**TrainConfig(epochs=7).to_json(), "from_the_future": True}
    assert TrainConfig.from_json(stored) == TrainConfig(epochs=7)
