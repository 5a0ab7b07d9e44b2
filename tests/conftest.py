"""Shared fixtures: a small flower dataset (real photos when ../shared has them, else made)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The five classes and a rough colour each, so made-up photos still differ by class.
from bench.photos import CLASSES, COLOURS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "flowers-sample"


def make_photo(path: Path, colour: tuple[int, int, int], seed: int, size=(160, 120)) -> Path:
    """Write a JPEG: a coloured blob on a green, noisy background."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = np.empty((h, w, 3), dtype=np.float64)
    image[:] = (60, 120, 40)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    blob = (xx - cx) ** 2 + (yy - cy) ** 2 < (rng.uniform(0.2, 0.35) * min(w, h)) ** 2
    image[blob] = colour
    image += rng.normal(0, 12, image.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def build_sample(folder: Path, per_class: int) -> Path:
    """Lay out `folder/flowers/<class>/*.jpg` as kagglehub does; return `folder`."""
    for label, name in enumerate(CLASSES):
        target = folder / "flowers" / name
        target.mkdir(parents=True, exist_ok=True)
        source = SHARED_SAMPLE / "flowers" / name
        if source.is_dir():
            for photo in sorted(source.glob("*.jpg"))[:per_class]:
                shutil.copy(photo, target / photo.name)
        else:
            for i in range(per_class):
                make_photo(target / f"{name}_{i:03d}.jpg", COLOURS[name], seed=label * 1000 + i)
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
    from flower_model.data import scan_dataset

    return scan_dataset(sample_dir)


@pytest.fixture(scope="session")
def resnet():
    """The real ResNet50 graph, frozen, with seeded random weights (no ImageNet file here)."""
    from flower_model.backbone import WeightsChoice, build_backbone

    return build_backbone(WeightsChoice("none"), seed=42)
