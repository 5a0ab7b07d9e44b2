"""Training learns: on photos whose classes even a random-weights ResNet50 tells apart (a hue
and a stripe direction per class), a run must be right about nearly every held-out photo.

Near-chance accuracy on real flowers without ImageNet weights would hide a bug that mixes up
labels, features or class order; these tests would not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_model.data.dataset import scan_dataset
from flower_model.data.synthetic import CLASSES, write_photos
from flower_model.inference.predict import Classifier, Prediction
from flower_model.model.config import TrainConfig
from flower_model.workflows.train import train
from tests.conftest import built_once, cache_features, copy_home, run_cli

PER_CLASS = 10
MIN_ACCURACY = 0.95


@pytest.fixture(scope="module")
def striped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten striped photos per class, in the folder layout of a Kaggle download."""
    root = tmp_path_factory.mktemp("striped")
    write_photos(
        root / "flowers", PER_CLASS * len(CLASSES), seed=3, size=(160, 120), kind="striped"
    )
    return root


@pytest.fixture(scope="module")
def striped_home(striped: Path, resnet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with no runs whose feature cache holds the striped photos' features
    (extracted once for the module's tests; each test trains in a copy of its own)."""
    home = tmp_path_factory.mktemp("striped-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_HOME", str(home))
        cache_features(scan_dataset(striped), resnet)
    return home


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Two new photos per class, made with another seed: never trained or validated on."""
    written = write_photos(
        tmp_path_factory.mktemp("unseen"),
        2 * len(CLASSES),
        seed=99,
        size=(200, 150),
        kind="striped",
    )
    return [(w.path, CLASSES[w.label]) for w in written]


@pytest.mark.resnet
def test_the_command_line_learns_separable_classes(
    striped: Path, striped_home: Path, unseen, resnet, tmp_path: Path, monkeypatch, capfd
) -> None:
    home = copy_home(striped_home, tmp_path / "home", monkeypatch)
    # The defaults, as a user runs them: only the weights are 'none' (no ImageNet file here).
    trained = run_cli(capfd, "train", "--data", str(striped), "--weights", "none", home=home)
    assert trained.returncode == 0, trained.stderr
    (run,) = json.loads(run_cli(capfd, "runs", "--json", home=home).stdout)
    assert run["evaluation"]["count"] == 2 * len(CLASSES)
    assert run["evaluation"]["accuracy"] >= MIN_ACCURACY, run["history"]
    # The saved model, loaded from its folder (under the session's ResNet50 of its weights),
    # names the right class of photos it never saw.
    paths = [str(path) for path, _ in unseen]
    with built_once(resnet):
        predicted = json.loads(run_cli(capfd, "predict", "--json", *paths, home=home).stdout)
    assert [p["top_class"] for p in predicted] == [name for _, name in unseen]


@pytest.mark.resnet
def test_fine_tuning_keeps_what_the_head_learned(
    striped: Path, striped_home: Path, unseen, tmp_path: Path, monkeypatch
) -> None:
    copy_home(striped_home, tmp_path / "home", monkeypatch)
    config = TrainConfig(weights="none", mode="finetune", epochs=2, batch_size=16)
    info = train(scan_dataset(striped), config)
    meta = info.metadata
    assert meta.fine_tuned_after == 2 and meta.epochs_completed == 4
    assert meta.accuracy >= MIN_ACCURACY, meta.history
    results = Classifier.load(info.run_id).classify([path for path, _ in unseen])
    assert all(isinstance(r, Prediction) for r in results)
    assert [r.top_class for r in results] == [name for _, name in unseen]
