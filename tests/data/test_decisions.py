"""Decisions about a dataset's photos: kept in the workspace, undoable, applied to the dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from flower_model.core.errors import DatasetError
from flower_model.data.dataset import scan_dataset
from flower_model.data.decisions import (
    apply_decisions,
    as_recorded,
    decide,
    decided,
    decisions_file,
    load_decisions,
    undo,
    undo_all,
)
from flower_model.data.synthetic import write_photos


@pytest.fixture
def folder(tmp_path: Path, fresh_home: Path) -> Path:
    write_photos(tmp_path / "photos", 15, seed=3, size=(64, 48), kind="striped")
    return tmp_path / "photos"


def test_decisions_are_kept_in_the_workspace_and_leave_the_folder_alone(
    folder: Path, fresh_home: Path
) -> None:
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    dataset = scan_dataset(folder)
    first, second = dataset.records[0].path, dataset.records[1].path
    decide(dataset, first, "exclude", reason="outlier")
    decide(dataset, second, "relabel", "tulip", reason="label issue")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    stored = load_decisions(dataset.root)
    assert decisions_file(dataset.root).is_relative_to(fresh_home)
    assert [(d.path, d.action, d.label) for d in stored.items] == [
        (first, "exclude", None),
        (second, "relabel", "tulip"),
    ]
    # Deciding again about a photo replaces the decision; undo forgets it.
    decide(dataset, first, "relabel", "rose")
    assert (
        stored.of(first).action == "exclude"
        and load_decisions(dataset.root).of(first).label == "rose"
    )
    undo(dataset, first)
    assert load_decisions(dataset.root).of(first) is None


def test_applied_decisions_leave_photos_out_and_count_others_under_their_new_class(
    folder: Path,
) -> None:
    dataset = scan_dataset(folder)
    gone, moved = dataset.records[0], dataset.records[5]
    new_class = next(n for n in dataset.class_names if n != dataset.class_names[moved.label])
    decide(dataset, gone.path, "exclude")
    decide(dataset, moved.path, "relabel", new_class)
    applied = decided(dataset)
    paths = {r.path: r for r in applied.records}
    assert gone.path not in paths and len(applied.records) == len(dataset.records) - 1
    assert applied.class_names[paths[moved.path].label] == new_class
    assert applied.excluded == (gone.path,) and applied.relabelled == ((moved.path, new_class),)
    assert applied.fingerprint != dataset.fingerprint
    assert applied.class_names == dataset.class_names  # the model's outputs do not change
    # A run's recorded decisions give the same dataset back, whatever is decided later.
    undo(dataset, gone.path)
    again = as_recorded(dataset, applied.excluded, dict(applied.relabelled))
    assert again.records == applied.records and again.fingerprint == applied.fingerprint


def test_a_decision_about_a_changed_or_missing_photo_is_not_applied(folder: Path) -> None:
    dataset = scan_dataset(folder)
    changed, missing = dataset.records[0], dataset.records[1]
    decide(dataset, changed.path, "exclude")
    decide(dataset, missing.path, "exclude")
    other = write_photos(folder.parent / "other", 1, seed=99, size=(64, 48))[0].path
    (folder / changed.path).write_bytes(other.read_bytes())
    (folder / missing.path).unlink()
    rescanned = scan_dataset(folder)
    applied = decided(rescanned)
    assert changed.path in {r.path for r in applied.records}
    assert applied.excluded == ()


def test_bad_decisions_are_refused_with_the_reason(folder: Path) -> None:
    dataset = scan_dataset(folder)
    record = dataset.records[0]
    with pytest.raises(DatasetError, match="not a class"):
        decide(dataset, record.path, "relabel", "orchid")
    with pytest.raises(DatasetError, match="already filed"):
        decide(dataset, record.path, "relabel", dataset.class_names[record.label])
    with pytest.raises(DatasetError, match="not a usable photo"):
        decide(dataset, "daisy/nothing.jpg", "exclude")
    with pytest.raises(DatasetError, match="one of exclude, relabel"):
        decide(dataset, record.path, "delete")
    decisions_file(dataset.root).parent.mkdir(parents=True, exist_ok=True)
    decisions_file(dataset.root).write_text("{not json")
    with pytest.raises(DatasetError, match="delete that file"):
        load_decisions(dataset.root)


def test_no_decisions_give_the_dataset_unchanged(folder: Path) -> None:
    dataset = scan_dataset(folder)
    assert decided(dataset) is dataset
    assert apply_decisions(dataset, load_decisions(dataset.root)) is dataset


def test_deleting_an_upload_forgets_the_decisions_about_it(fresh_home: Path) -> None:
    from flower_model.core import workspace
    from flower_model.data import uploads
    from flower_model.data.decisions import forget_under

    folder = workspace.datasets_dir() / "mine"
    write_photos(folder, 10, seed=5, size=(64, 48))
    dataset = scan_dataset(folder)
    decide(dataset, dataset.records[0].path, "exclude")
    other = fresh_home / "elsewhere"
    write_photos(other, 10, seed=6, size=(64, 48))
    kept = scan_dataset(other)
    decide(kept, kept.records[0].path, "exclude")
    uploads.delete_dataset(folder)
    assert not decisions_file(dataset.root).exists() and decisions_file(kept.root).exists()
    assert forget_under(other) == 1 and not decisions_file(kept.root).exists()


def test_each_persons_decisions_are_theirs_alone(folder: Path) -> None:
    dataset = scan_dataset(folder)
    first, second = (r.path for r in dataset.records[:2])
    decide(dataset, first, "exclude", owner="account:ana@example.org")
    decide(dataset, second, "exclude", owner="session:ben")
    assert [d.path for d in load_decisions(folder, "account:ana@example.org").items] == [first]
    assert decided(dataset, "session:ben").excluded == (second,)
    assert decided(dataset).excluded == ()  # the folder's own: none
    undo_all(dataset, owner="session:ben")  # his undo touches his alone
    assert decided(dataset, "account:ana@example.org").excluded == (first,)
    assert decided(dataset, "session:ben") is dataset


def test_the_folders_published_decisions_are_used_only_when_chosen(folder: Path) -> None:
    dataset = scan_dataset(folder)
    first, second = (r.path for r in dataset.records[:2])
    filed = dataset.class_names[dataset.records[0].label]
    other = next(n for n in dataset.class_names if n != filed)
    decide(dataset, first, "exclude")  # the command line's: the folder's own
    decide(dataset, second, "exclude")
    decide(dataset, first, "relabel", other, owner="session:ben")  # his replaces it
    assert decided(dataset, "session:ben").excluded == ()
    both = decided(dataset, "session:ben", published=True)
    assert both.excluded == (second,) and both.relabelled == ((first, other),)


def test_an_uploads_published_decisions_are_its_uploaders(fresh_home: Path) -> None:
    from flower_model.data.uploads import add_photos, create_dataset
    from tests.data.test_uploads import jpeg

    folder = create_dataset("garden", owner="account:ana@example.org")
    for name, colour in (("rose", (200, 0, 0)), ("tulip", (0, 0, 200))):
        photos = [(f"{i}.jpg", jpeg((colour[0] + i, 9, colour[2]))) for i in range(2)]
        add_photos(folder, name, photos)
    dataset = scan_dataset(folder)
    first = dataset.records[0].path
    decide(dataset, first, "exclude", owner="account:ana@example.org")
    assert decided(dataset, "session:ben").excluded == ()  # not his unless he chooses
    assert decided(dataset, "session:ben", published=True).excluded == (first,)
    assert decided(dataset, "account:ana@example.org", published=True).excluded == (first,)
