"""The steps before a fit, shared by a training and a search: every photo's features
(extracted once, then cached) and the split that keeps each picture and its duplicates on
one side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_model.core.events import CancelToken
from flower_model.data.dataset import Dataset, ImageRecord, Split, records_for, split_dataset
from flower_model.features.extraction import DatasetFeatures, dataset_features
from flower_model.model.config import ResolvedConfig, TrainConfig
from flower_model.model.scaling import Selection

# Reports one event: its kind and fields (a TrainEvent's).
Report = Callable[..., None]


@dataclass(frozen=True)
class Photos:
    """A dataset's photos as a run splits them: training first, then held out."""

    dataset: Dataset
    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]

    @classmethod
    def split(cls, dataset: Dataset, split: Split) -> Photos:
        return cls(dataset, records_for(dataset, split.train), records_for(dataset, split.val))

    def paths(self, records: Sequence[ImageRecord]) -> list[Path]:
        return [self.dataset.path_of(r) for r in records]

    @staticmethod
    def labels(records: Sequence[ImageRecord]) -> np.ndarray:
        return np.array([r.label for r in records], dtype=np.int64)


def extract(
    dataset: Dataset, resolved: ResolvedConfig, report: Report, cancel: CancelToken
) -> DatasetFeatures:
    """Return every photo's features, extracting each photo once (the cache keeps them;
    ResNet50 is not even built when it holds them all)."""
    config = resolved.config
    computed = dataset_features(
        dataset,
        resolved.weights,
        config.seed,
        config.precision,
        progress=lambda done, total: report("extract", done=done, total=total),
        cancelled=cancel.is_set,
        batch_size=max(config.batch_size, 32),
        on_phase=lambda message: report("phase", message=message),
        dtype=np.float16,  # as cached: half the memory (fit_head reads float32 blocks)
    )
    stats = computed.stats
    report(
        "phase",
        message=f"features: {stats.cached} from cache, {stats.computed} computed",
        done=stats.cached,
        total=stats.total,
    )
    return computed


def leak_free_split(
    dataset: Dataset, computed: DatasetFeatures, config: TrainConfig, report: Report
) -> Split:
    """Return the run's split with every picture and its duplicates (the same bytes, or
    near-duplicates by their features) on one side, so no picture is trained on and held out."""
    from flower_model.audit.near_duplicates import near_duplicate_sets
    from flower_model.data.groups import duplicate_groups

    report("phase", message="keeping duplicates on one side of the split")
    records = dataset.records
    groups = duplicate_groups(
        [r.path for r in records],
        [r.sha256 for r in records],
        [dataset.class_names[r.label] for r in records],
        near_duplicate_sets(
            computed.features, known_as=(computed.cache_key, [r.sha256 for r in records])
        ),
    )
    return split_dataset(
        dataset, config.val_fraction, config.seed, groups=[g.paths for g in groups]
    )


@dataclass(frozen=True)
class TrainingPart:
    """The training photos' features (rows of the dataset's, not copied), their labels, and
    their duplicate groups as positions among them."""

    features: Selection
    labels: np.ndarray
    groups: tuple[tuple[int, ...], ...]


def training_part(photos: Photos, computed: DatasetFeatures, split: Split) -> TrainingPart:
    """Return the part of a dataset's features a run trains on (held-out photos excluded)."""
    row_of = {r.path: i for i, r in enumerate(photos.dataset.records)}
    rows = np.fromiter((row_of[r.path] for r in photos.train), np.int64, len(photos.train))
    position = {r.path: i for i, r in enumerate(photos.train)}
    groups = tuple(tuple(position[p] for p in group if p in position) for group in split.groups)
    return TrainingPart(Selection(computed.features, rows), photos.labels(photos.train), groups)
