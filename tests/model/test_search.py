"""Tune's search: a far better learning rate than a bad start, the same trials for the same
seed, a prompt stop that keeps what was done, and folds that keep duplicates together."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.core.events import CancelToken
from flower_model.model import search as searching
from flower_model.model.backbone import FEATURE_DIM
from flower_model.model.config import TrainConfig
from flower_model.model.search import fold_groups, search, stratified_folds

BAD_START = TrainConfig(weights="none", learning_rate=1e-1, epochs=8, batch_size=32, patience=2)


def separable(count: int = 240, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features of `classes` clusters, as float16 like the cache's, labels balanced."""
    generator = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    centres = generator.normal(size=(classes, FEATURE_DIM))
    rows = 0.2 * centres[labels] + generator.normal(size=(count, FEATURE_DIM))
    return np.maximum(rows, 0).astype(np.float16), labels


@pytest.fixture(autouse=True)
def few_epochs(monkeypatch) -> None:
    monkeypatch.setattr(searching, "EPOCHS", (3, 12))


def test_the_search_beats_a_bad_learning_rate_by_far() -> None:
    features, labels = separable()
    found = search(features, labels, 4, BAD_START, trials=8)
    first, best = found.trials[0], found.best
    assert first.learning_rate == pytest.approx(1e-1)  # the settings given come first
    assert best is not None and best.learning_rate <= 0.03  # a third of the bad start or less
    assert best.accuracy >= (first.accuracy or 0.0) + 0.3
    assert found.stopped == "all trials" and len(found.trials) == 8
    assert all(t.folds < found.folds for t in found.trials if t.state == "pruned")
    assert {t.state for t in found.trials} <= {"complete", "pruned", "diverged"}


def test_the_same_seed_gives_the_same_trials() -> None:
    features, labels = separable(seed=1)
    runs = [search(features, labels, 4, BAD_START, trials=4) for _ in range(2)]
    settings = [[(t.learning_rate, t.batch_size, t.epochs) for t in r.trials] for r in runs]
    assert settings[0] == settings[1]
    scores = [[t.accuracy for t in r.trials] for r in runs]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def test_a_stop_ends_the_search_and_keeps_the_trials_done() -> None:
    features, labels = separable()
    cancel = CancelToken()
    seen = []

    def on_trial(trial) -> None:
        seen.append(trial)
        cancel.cancel()  # asked during the second trial's first fold, it would stop there

    found = search(features, labels, 4, BAD_START, trials=10, on_trial=on_trial, cancel=cancel)
    assert found.stopped == "stopped by the user" and found.trials == tuple(seen)
    assert len(found.trials) == 1


def test_a_stop_before_the_first_fold_ends_leaves_no_trial() -> None:
    features, labels = separable()
    cancel = CancelToken()
    cancel.cancel()
    found = search(features, labels, 4, BAD_START, trials=5, cancel=cancel)
    assert found.trials == () and found.best is None and found.stopped == "stopped by the user"


def test_the_folds_keep_each_duplicate_group_together_and_spread_each_class() -> None:
    labels = np.arange(60) % 3
    groups = fold_groups(60, [[0, 3, 6], [1, 4], [59]])
    assert groups[3] == groups[6] == 0 and groups[4] == 1 and groups[59] == 59
    folds = stratified_folds(labels, groups, 3, seed=7)
    assert len(folds) == 3
    for train, held in folds:
        assert set(train).isdisjoint(held) and len(train) + len(held) == 60
        together = {0, 3, 6}
        assert together <= set(held) or together.isdisjoint(held)
        assert sorted(np.bincount(labels[held], minlength=3)) == [6, 7, 7] or (
            np.bincount(labels[held], minlength=3).min() >= 5
        )
    # A class of two photos allows two folds, not three.
    assert len(stratified_folds(np.array([0, 0, 1, 1, 1, 1]), np.arange(6), 3, seed=0)) == 2
