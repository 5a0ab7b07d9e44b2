"""The audit: planted label errors, duplicates and outliers found at the top of their lists,
with random-weights features of generated classes that ResNet50 separates even so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flower_model.audit import findings as audit_module
from flower_model.audit.findings import (
    Audit,
    audit_dataset,
    audit_file,
    kept_audits,
    out_of_sample_probabilities,
)
from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import CancelToken
from flower_model.data.dataset import scan_dataset, split_dataset
from flower_model.data.synthetic import Planted, write_dirty_photos
from tests.conftest import built_once, copy_home, know_the_weights, stand_in_features

# The audit's quality bar: this share of each planted kind among the top of its list.
RECALL = 0.8


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Planted]:
    folder = tmp_path_factory.mktemp("dirty") / "photos"
    return folder, write_dirty_photos(folder, per_class=50, seed=1)


@pytest.fixture(scope="module")
def audited(
    dirty: tuple[Path, Planted], resnet, warm_template, tmp_path_factory: pytest.TempPathFactory
):
    """The dirty dataset audited once, with random weights, in a workspace of its own (the
    features extracted by the session's ResNet50 of those weights)."""
    home = know_the_weights(warm_template, tmp_path_factory.mktemp("audit") / "home")
    with pytest.MonkeyPatch.context() as patch, built_once(resnet):
        patch.setenv("FLOWER_LENS_HOME", str(home))
        dataset = scan_dataset(dirty[0])
        steps: list[tuple[str, int, int]] = []
        found = audit_dataset(dataset, "none", progress=lambda *step: steps.append(step))
    return dataset, found, steps, home


def recall_at_top(listed: list[str], planted: tuple[str, ...]) -> float:
    top = set(listed[: len(planted)])
    return sum(path in top for path in planted) / len(planted)


def test_planted_label_errors_are_at_the_top_of_the_label_issues(audited, dirty) -> None:
    _, found, _, _ = audited
    planted = dirty[1].mislabelled
    assert len(planted) == 12
    assert recall_at_top([f.path for f in found.label_issues], planted) >= RECALL
    # Each suggestion is the class the photo shows: the one it was generated as.
    by_path = {f.path: f for f in found.label_issues}
    found_planted = [
        (by_path[p], shows)
        for p, shows in zip(planted, dirty[1].shows, strict=True)
        if p in by_path
    ]
    right = sum(f.suggested == shows for f, shows in found_planted)
    assert right >= RECALL * len(found_planted)
    assert [f.score for f in found.label_issues] == sorted(
        (f.score for f in found.label_issues), reverse=True
    )


def test_planted_outliers_are_at_the_top_of_the_outliers(audited, dirty) -> None:
    _, found, _, _ = audited
    assert recall_at_top([f.path for f in found.outliers], dirty[1].outliers) >= RECALL


def test_planted_copies_are_grouped_exact_or_near(audited, dirty) -> None:
    _, found, _, _ = audited
    groups = {g.paths: g for g in found.duplicates}

    def group_of(pair: tuple[str, str]):
        return next((g for paths, g in groups.items() if set(pair) <= set(paths)), None)

    exact = [group_of(pair) for pair in dirty[1].duplicates]
    near = [group_of(pair) for pair in dirty[1].near_duplicates]
    assert sum(g is not None and g.exact for g in exact) >= RECALL * len(exact)
    assert sum(g is not None and not g.exact for g in near) >= RECALL * len(near)
    assert len(found.duplicates) <= 2 * len(exact + near)  # few false groups


def test_beyond_the_exact_search_the_reduced_neighbours_find_the_same_problems(
    audited, dirty, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.audit import datalab

    dataset, exact, _, home = audited
    searched: list[int] = []
    real = datalab.neighbour_graph
    monkeypatch.setattr(datalab, "EXACT_NEIGHBOURS_MAX", 100)  # the dataset has 250 photos
    monkeypatch.setattr(
        datalab, "neighbour_graph", lambda rows, k: searched.append(k) or real(rows, k)
    )
    copy_home(home, tmp_path / "home", monkeypatch)  # the module's kept audit stays as it is
    reduced = audit_dataset(dataset, "none", again=True)
    assert searched  # the graph was built, then cleanlab used it
    assert recall_at_top([f.path for f in reduced.outliers], dirty[1].outliers) >= RECALL
    near = [
        any(set(pair) <= set(g.paths) and not g.exact for g in reduced.duplicates)
        for pair in dirty[1].near_duplicates
    ]
    assert sum(near) >= RECALL * len(near)
    assert len(reduced.duplicates) <= len(exact.duplicates) + 2


def test_leaks_are_the_groups_a_plain_split_cuts_and_the_run_split_cuts_none(audited) -> None:
    dataset, found, _, _ = audited
    plain = split_dataset(dataset, 0.2, found.seed)
    val = set(plain.val)
    for group in found.duplicates:
        sides = {path in val for path in group.paths}
        assert group.leak == (len(sides) == 2)
    assert found.leaks  # with ten planted pairs, a plain split cuts some
    kept = split_dataset(dataset, 0.2, found.seed, groups=[g.paths for g in found.duplicates])
    assert all(len({p in set(kept.val) for p in g.paths}) == 1 for g in found.duplicates)


def test_the_audit_reports_its_progress_and_what_its_features_mean(audited) -> None:
    _, found, steps, _ = audited
    whats = [what for what, _, _ in steps]
    assert whats[0] == "extracting features" and whats[-1] == "finding issues with cleanlab"
    folds = [step for step in steps if step[0].startswith("training fold")]
    assert folds[-1][1] == folds[-1][2] and "fold 5 of 5" in folds[-1][0]
    assert not found.transfer_learning and "no transfer learning" in found.weights_label
    assert found.folds == 5 and found.photos == 265 and 0.85 < found.accuracy < 0.99


def test_an_audit_is_kept_and_read_back_instead_of_redone(audited, monkeypatch) -> None:
    dataset, found, _, home = audited
    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    assert audit_file(found.fingerprint, found.cache_key, 5, 42).is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the kept audit was not read")

    monkeypatch.setattr(audit_module, "out_of_sample_probabilities", refuse)
    assert audit_dataset(dataset, "none") == found
    assert kept_audits(dataset.fingerprint) == [found]
    assert Audit.from_json(found.to_json()) == found


def test_out_of_sample_probabilities_come_from_heads_that_never_saw_the_photo() -> None:
    # Random labels on random features: a head that saw a photo can learn its label by heart,
    # one that did not can only guess (a fifth of the time for five classes).
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 2048)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    probabilities = out_of_sample_probabilities(features, labels, 5, folds=3)
    assert probabilities.shape == (300, 5) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == labels) < 0.35


def test_a_stopped_audit_keeps_nothing(dirty, fresh_home) -> None:
    dataset = scan_dataset(dirty[0])
    stand_in_features(dataset)  # cached: the audit goes straight to its folds
    cancel = CancelToken()

    def stop_in_training(what: str, done: int, total: int) -> None:
        if what.startswith("training fold 2"):
            cancel.cancel()

    with pytest.raises(TrainingCancelled, match="audit stopped"):
        audit_dataset(dataset, "none", progress=stop_in_training, cancel=cancel)
    assert kept_audits(dataset.fingerprint) == []


def test_a_stop_while_cleanlab_works_keeps_nothing(audited, monkeypatch) -> None:
    dataset, _, _, home = audited
    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    cancel = CancelToken()

    def stop_at_cleanlab(what: str, done: int, total: int) -> None:
        if what.startswith("finding issues"):
            cancel.cancel()

    with pytest.raises(TrainingCancelled, match="audit stopped"):
        audit_dataset(dataset, "none", folds=2, progress=stop_at_cleanlab, cancel=cancel)
    assert [a.folds for a in kept_audits(dataset.fingerprint)] == [5]


def test_too_few_folds_or_photos_are_refused() -> None:
    from flower_model.core.errors import DatasetError

    features = np.zeros((10, 2048), dtype=np.float32)
    with pytest.raises(DatasetError, match="at least 2 folds"):
        out_of_sample_probabilities(features, np.array([0, 1] * 5), 2, folds=1)
    with pytest.raises(DatasetError, match="at least two photos"):
        out_of_sample_probabilities(features, np.array([0] * 9 + [1]), 2)
