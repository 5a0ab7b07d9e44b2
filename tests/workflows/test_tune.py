"""Tune on a dataset: the search reads the training photos' features alone, is kept in the
workspace, and its best settings train a run that records the same cross-validated score."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import CancelToken
from flower_model.model import search as searching
from flower_model.model.config import TrainConfig
from flower_model.workflows import tune as tuning
from flower_model.workflows.train import train
from flower_model.workflows.tune import read_tuning, tune

BASE = TrainConfig(weights="none", epochs=4, batch_size=16, patience=2)


@pytest.fixture(autouse=True)
def few_epochs(monkeypatch) -> None:
    monkeypatch.setattr(searching, "EPOCHS", (2, 5))


def test_the_search_never_reads_a_held_out_photo(sample, stand_in_home, monkeypatch) -> None:
    read: list[np.ndarray] = []
    real_search, real_range = tuning.search, tuning.range_test

    def watched_search(features, *args, **kwargs):
        read.append(np.asarray(features.index))
        return real_search(features, *args, **kwargs)

    def watched_range(features, *args, **kwargs):
        read.append(np.asarray(features.index))
        return real_range(features, *args, **kwargs)

    monkeypatch.setattr(tuning, "search", watched_search)
    monkeypatch.setattr(tuning, "range_test", watched_range)
    events = []
    found = tune(sample, BASE, trials=3, on_event=events.append)
    run = train(sample, BASE)
    held_out = set(run.metadata.split.val)
    rows = {r.path: i for i, r in enumerate(sample.records)}
    held_rows = {rows[p] for p in held_out}
    assert len(read) == 2 and all(held_rows.isdisjoint(index.tolist()) for index in read)
    assert len(read[0]) == len(run.metadata.split.train)
    # Its events: a range test, then each trial with its settings and score.
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("range") == 1
    trials = [e for e in events if e.kind == "trial"]
    assert [e.done for e in trials] == [1, 2, 3] and all(e.total == 3 for e in trials)
    assert read_tuning(sample, "none") == found


def test_the_best_settings_train_a_run_that_records_their_score(sample, stand_in_home) -> None:
    from dataclasses import replace

    found = tune(sample, BASE, trials=3)
    best = found.search.best
    assert best is not None and found.best_config is not None
    config = replace(found.best_config, cross_validation=found.search.folds)
    run = train(sample, config)
    scores = run.metadata.cross_validation
    assert scores is not None and len(scores.accuracy) == found.search.folds
    assert scores.mean == pytest.approx(best.accuracy, abs=0.02)
    # Kept with the run, read back with it.
    from flower_model.runs.store import get_run

    assert get_run(run.run_id).metadata.cross_validation == scores


def test_a_search_stopped_before_any_trial_keeps_nothing(sample, stand_in_home) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(TrainingCancelled):
        tune(sample, BASE, trials=3, cancel=cancel)
    assert read_tuning(sample, "none") is None
