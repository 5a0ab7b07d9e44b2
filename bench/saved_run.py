"""A small run saved by the real training code, for the classify and cold-start measurements."""

from __future__ import annotations

from pathlib import Path

from bench.photos import make_photos
from flower_model.data.dataset import scan_dataset
from flower_model.model.config import TrainConfig
from flower_model.runs.store import RunInfo
from flower_model.workflows.train import train

PHOTOS_PER_CLASS = 4


def save_small_run(folder: Path) -> RunInfo:
    """Return a run trained for one epoch on a few generated photos (its model is full size)."""
    make_photos(folder, PHOTOS_PER_CLASS * 5, seed=1)
    dataset = scan_dataset(folder)
    return train(dataset, TrainConfig(epochs=1, batch_size=8, weights="none", patience=0))
