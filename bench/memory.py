"""Peak memory of training the head from cached features, in a process of its own."""

from __future__ import annotations

from dataclasses import dataclass

from bench.subprocesses import run_probe


@dataclass(frozen=True)
class TrainingMemory:
    """Resident memory of a head training from cache, with ResNet50 built as train.py does."""

    images: int
    epochs: int
    rss_before_mb: float  # after TensorFlow and the features are in memory (no ResNet50)
    peak_rss_mb: float  # the process's peak, training included
    seconds: float  # the fit in that process


def measure_training_memory(images: int, epochs: int, batch_size: int) -> TrainingMemory:
    """Return the memory of training the head on `images` cached features for `epochs`."""
    answer, _ = run_probe(
        "train-memory",
        "--images",
        str(images),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
    )
    return TrainingMemory(
        images=images,
        epochs=answer["epochs"],
        rss_before_mb=answer["rss_before_mb"],
        peak_rss_mb=answer["peak_rss_mb"],
        seconds=answer["seconds"],
    )
