"""Tune a dataset's training settings: its features (cached, as a training extracts them),
the split a run would make, then on the training part alone a learning-rate range test and
a search (model.search); the result is kept in the workspace, the latest per dataset."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flower_model.core import workspace
from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import CancelToken, OnEvent, TrainEvent
from flower_model.data.dataset import Dataset, split_dataset
from flower_model.model.config import TrainConfig, resolve_config
from flower_model.model.lr_range import RangeTest, range_test
from flower_model.model.search import FOLDS, Search, Space, Trial, search
from flower_model.workflows.prepare import Photos, extract, leak_free_split, training_part

TRIALS = 30


@dataclass(frozen=True)
class Tuning:
    """A dataset's search: on which photos and features, from which settings, what it found."""

    root: str
    fingerprint: str
    cache_key: str
    base: TrainConfig
    space: Space
    range_test: RangeTest
    search: Search
    created: str

    @property
    def best_config(self) -> TrainConfig | None:
        """Return the base settings with the best trial's, or None without a complete trial."""
        best = self.search.best
        return None if best is None else best.config(self.base)

    def to_json(self) -> dict:
        found = self.search
        return {
            "root": self.root,
            "fingerprint": self.fingerprint,
            "cache_key": self.cache_key,
            "base": self.base.to_json(),
            "dropout_searched": self.space.dropout,
            "range_test": self.range_test.to_json(),
            "trials": [t.to_json() for t in found.trials],
            "best": None if found.best is None else found.best.number,
            "folds": found.folds,
            "photos": found.photos,
            "seconds": found.seconds,
            "stopped": found.stopped,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, value: dict) -> Tuning:
        trials = tuple(Trial.from_json(t) for t in value["trials"])
        best = next((t for t in trials if t.number == value["best"]), None)
        found = Search(
            trials, best, value["folds"], value["photos"], value["seconds"], value["stopped"]
        )
        return cls(
            value["root"],
            value["fingerprint"],
            value["cache_key"],
            TrainConfig.from_json(value["base"]),
            Space(dropout=bool(value["dropout_searched"])),
            RangeTest.from_json(value["range_test"]),
            found,
            value["created"],
        )


def tuning_file(dataset: Dataset, weights: str) -> Path:
    """Return where the latest search of a dataset (its photos as scanned) with these
    weights ("imagenet", "none" or a file) is kept."""
    name = "".join(c if c.isalnum() else "-" for c in weights)[-40:]
    return workspace.searches_dir() / f"{dataset.fingerprint}-{name}.json"


def read_tuning(dataset: Dataset, weights: str) -> Tuning | None:
    """Return the latest search kept for a dataset, or None (none, or unreadable)."""
    try:
        return Tuning.from_json(json.loads(tuning_file(dataset, weights).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def tune(
    dataset: Dataset,
    base: TrainConfig | None = None,
    trials: int = TRIALS,
    seconds: float | None = None,
    space: Space | None = None,
    on_event: OnEvent | None = None,
    cancel: CancelToken | None = None,
) -> Tuning:
    """Search a dataset's training settings on its training photos' features (the photos a
    run with the base settings would train on; the held-out ones are never read) and keep
    the result. Stopped, it keeps the trials done; stopped before any, it raises
    TrainingCancelled."""
    base = base or TrainConfig()
    space = space or Space()
    cancel = cancel or CancelToken()

    def report(kind: str, **fields: object) -> None:
        if on_event is not None:
            on_event(TrainEvent(kind=kind, **fields))

    if trials < 1:
        raise ValueError(f"a search needs at least one trial, not {trials}")
    started = time.time()
    try:
        report("start", message="searching the training settings")
        resolved = resolve_config(base)
        split_dataset(dataset, base.val_fraction, base.seed)  # refuse a class too small now
        computed = extract(dataset, resolved, report, cancel)
        split = leak_free_split(dataset, computed, base, report)
        photos = Photos.split(dataset, split)
        part = training_part(photos, computed, split)
        train, labels = part.features, part.labels
        groups = part.groups
        classes = len(dataset.class_names)

        report("phase", message="learning-rate range test")
        tested = range_test(train, labels, classes, base, cancel=cancel)
        report("range", detail=tested.to_json())
        report(
            "phase",
            message=f"searching: {trials} trials, each {FOLDS}-fold cross-validated on the "
            f"{len(labels):,} training photos",
        )
        count = [0]

        def on_trial(trial: Trial) -> None:
            count[0] += 1
            report(
                "trial",
                message=f"trial {count[0]} of {trials}",
                detail=trial.to_json(),
                done=count[0],
                total=trials,
            )

        found = search(
            train, labels, classes, base, trials, seconds, space, groups, FOLDS, on_trial, cancel
        )
    except TrainingCancelled as exc:
        report("cancelled", message=str(exc))
        raise
    except Exception as exc:
        report("error", message=str(exc) or type(exc).__name__)
        raise
    if not found.trials:
        report("cancelled", message="stopped before any trial completed")
        raise TrainingCancelled("the search was stopped before any trial completed")
    tuning = Tuning(
        str(dataset.root),
        dataset.fingerprint,
        computed.cache_key,
        resolved.config,
        space,
        tested,
        found,
        time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
    )
    workspace.write_atomic(tuning_file(dataset, base.weights), json.dumps(tuning.to_json()))
    best = found.best
    said = (
        f"best: trial {best.number + 1}, {best.accuracy:.1%} ± {best.spread:.1%} cross-validated"
        if best is not None and best.accuracy is not None
        else "no trial completed"
    )
    report("end", message=f"{len(found.trials)} trials, {found.stopped}; {said}")
    return tuning


def found_so_far(events: Sequence[TrainEvent]) -> tuple[RangeTest | None, tuple[Trial, ...]]:
    """Return what a running search's events say it found: its range test and its trials."""
    tested = next(
        (RangeTest.from_json(e.detail) for e in events if e.kind == "range" and e.detail), None
    )
    trials = tuple(Trial.from_json(e.detail) for e in events if e.kind == "trial" and e.detail)
    return tested, trials
