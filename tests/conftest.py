"""Shared fixtures: a small flower dataset (real photos when ../shared has them, else made)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from flower_model.data.synthetic import CLASSES, flower_photo, write_photos

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "flowers-sample"


def make_photo(path: Path, colour: tuple[int, int, int], seed: int, size=(160, 120)) -> Path:
    """Write one generated flower-like JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flower_photo(np.random.default_rng(seed), colour, size).save(path, quality=90)
    return path


def build_sample(folder: Path, per_class: int) -> Path:
    """Lay out `folder/flowers/<class>/*.jpg` as kagglehub does, with real photos from
    ../shared when present, else generated ones; return `folder`."""
    if not all((SHARED_SAMPLE / "flowers" / name).is_dir() for name in CLASSES):
        write_photos(folder / "flowers", per_class * len(CLASSES), seed=7, size=(160, 120))
        return folder
    for name in CLASSES:
        target = folder / "flowers" / name
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted((SHARED_SAMPLE / "flowers" / name).glob("*.jpg"))[:per_class]:
            shutil.copy(photo, target / photo.name)
    return folder


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def flower_home(session_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep runs and caches out of the checkout; shared across tests so features are reused."""
    monkeypatch.setenv("FLOWER_LENS_HOME", str(session_home))
    monkeypatch.delenv("FLOWER_LENS_WEIGHTS", raising=False)
    monkeypatch.delenv("FLOWER_LENS_DATA", raising=False)
    # Explore computes a chosen dataset's features in the background: its own tests say so.
    monkeypatch.setenv("FLOWER_LENS_BACKGROUND_FEATURES", "0")
    return session_home


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace of the test's own: empty caches, no runs."""
    home = tmp_path / "home"
    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset, 8 photos per class, nested one level down like a kagglehub download."""
    return build_sample(tmp_path_factory.mktemp("sample"), per_class=8)


@pytest.fixture(scope="session")
def sample(sample_dir: Path, session_home: Path):
    """The small dataset, scanned."""
    os.environ["FLOWER_LENS_HOME"] = str(session_home)
    from flower_model.data.dataset import scan_dataset

    return scan_dataset(sample_dir)


@pytest.fixture(scope="session")
def resnet():
    """The real ResNet50 graph, frozen, with seeded random weights (no ImageNet file here)."""
    from flower_model.model.backbone import WeightsChoice, build_resnet50

    return build_resnet50(WeightsChoice("none"), seed=42)


@pytest.fixture(scope="session")
def reference(resnet):
    """The textbook feature extractor with the same weights: ResNet50(pooling='avg')."""
    import keras

    model = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3)
    )
    model.set_weights(resnet.get_weights())
    return model


# In CI the fuzz tests replay the same examples each time, so that a red build is reproducible;
# on a developer's machine they explore new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
