"""Finding, scanning, splitting and downloading datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from flower_model.core.errors import DatasetError
from flower_model.data import dataset as data
from flower_model.data.dataset import dataset_summary, find_class_root, scan_dataset, split_dataset
from flower_model.data.synthetic import COLOURS
from tests.conftest import make_photo


def make_dataset(root: Path, per_class: int = 3, classes=("daisy", "rose", "tulip")) -> Path:
    for name in classes:
        for i in range(per_class):
            make_photo(root / name / f"{name}{i}.jpg", COLOURS[name], seed=sum(name.encode()) + i)
    return root


@pytest.mark.parametrize("nesting", ["", "flowers", "flowers/flowers"])
def test_class_root_is_found_up_to_two_levels_down(tmp_path: Path, nesting: str) -> None:
    root = make_dataset(tmp_path / nesting if nesting else tmp_path)
    assert find_class_root(tmp_path) == root


def test_tensorflow_flower_photos_layout(tmp_path: Path) -> None:
    root = tmp_path / "flower_photos"
    make_dataset(root, classes=("daisy", "rose", "tulip"))
    (root / "LICENSE.txt").write_text("CC-BY")
    assert find_class_root(tmp_path) == root


def test_missing_folder_and_empty_folder_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        find_class_root(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no class folders with images"):
        find_class_root(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        find_class_root(tmp_path / "file.txt")


def test_scan_skips_unusable_files_with_reasons(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    (root / "daisy" / ".DS_Store").write_bytes(b"\0\0")
    (root / "daisy" / "notes.txt").write_text("hello")
    (root / "rose" / "empty.jpg").touch()
    good = (root / "tulip" / "tulip0.jpg").read_bytes()
    (root / "tulip" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "tulip" / "fake.png").write_text("not a png")
    (root / "rose" / "extra").mkdir()
    dataset = scan_dataset(tmp_path)
    assert dataset.class_names == ("daisy", "rose", "tulip")
    assert dataset.counts() == {"daisy": 3, "rose": 3, "tulip": 3}
    reasons = {item.path: item.reason for item in dataset.skipped}
    assert reasons["daisy/.DS_Store"] == "hidden file"
    assert reasons["daisy/notes.txt"] == "not an image file type (.txt)"
    assert reasons["rose/empty.jpg"] == "the file is empty (0 bytes)"
    assert reasons["tulip/cut.jpg"] == "the file is truncated"
    assert reasons["tulip/fake.png"].startswith("not an image")
    assert "folder inside" in reasons["rose/extra"]
    summary = dataset_summary(dataset)
    assert summary["images"] == 9 and len(summary["skipped"]) == 6
    assert summary["width"] == {"min": 160, "max": 160}


def test_broken_links_loops_and_links_out_are_skipped_with_reasons(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data")
    outside = make_photo(tmp_path / "private" / "secret.jpg", (1, 2, 3), seed=1)
    (root / "daisy" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "rose" / "loop.jpg").symlink_to(root / "rose" / "loop.jpg")
    (root / "tulip" / "out.jpg").symlink_to(outside)
    (root / "tulip" / "in.jpg").symlink_to(root / "daisy" / "daisy0.jpg")
    inside = (root.resolve(),)
    dataset = scan_dataset(root, allowed=lambda path: path.is_relative_to(inside[0]))
    reasons = {item.path: item.reason for item in dataset.skipped}
    assert reasons["daisy/gone.jpg"] == "a broken link (its target does not exist)"
    assert reasons["rose/loop.jpg"] == "a symlink loop"
    assert reasons["tulip/out.jpg"].startswith("a link to outside the folders")
    assert "tulip/in.jpg" in {r.path for r in dataset.records}  # a link inside is followed
    # The CLI is not confined: the same folder scanned without a check reads the link out.
    assert "tulip/out.jpg" in {r.path for r in scan_dataset(root).records}


def test_class_order_is_sorted_folder_names(tmp_path: Path) -> None:
    make_dataset(tmp_path, classes=("tulip", "daisy", "rose"))
    dataset = scan_dataset(tmp_path)
    assert dataset.class_names == ("daisy", "rose", "tulip")
    assert {r.label for r in dataset.records if r.path.startswith("tulip/")} == {2}


def test_one_class_is_not_a_dataset(tmp_path: Path) -> None:
    make_dataset(tmp_path, classes=("daisy", "rose"))
    for photo in (tmp_path / "rose").iterdir():
        photo.write_bytes(b"broken")
    with pytest.raises(DatasetError, match="at least two"):
        scan_dataset(tmp_path)


def test_second_scan_reads_the_cache_and_notices_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path)
    first = scan_dataset(tmp_path)
    calls = []
    real_inspect = data.inspect
    monkeypatch.setattr(data, "inspect", lambda *a: calls.append(a) or real_inspect(*a))
    data._SCANNED.clear()  # another process: it reads the stored scan
    again = scan_dataset(tmp_path)
    assert calls == [] and again == first
    # A rescan reads only the new and the changed files, and forgets the removed ones.
    make_photo(tmp_path / "rose" / "new.jpg", (1, 2, 3), seed=99)
    photo = next((tmp_path / "tulip").iterdir())
    photo.write_bytes(photo.read_bytes() + b"\0")
    removed = next((tmp_path / "daisy").iterdir())
    removed.unlink()
    data._SCANNED.clear()
    changed = scan_dataset(tmp_path)
    assert sorted(name for _, name in calls) == sorted(["new.jpg", photo.name])
    assert changed.fingerprint != first.fingerprint
    assert changed.counts()["rose"] == first.counts()["rose"] + 1
    assert changed.counts()["daisy"] == first.counts()["daisy"] - 1


def test_a_folder_scanned_before_in_this_process_is_only_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path)
    first = scan_dataset(tmp_path)
    monkeypatch.setattr(data.scans, "read", lambda store: pytest.fail("the stored scan was read"))
    assert scan_dataset(tmp_path) is first
    photo = next((tmp_path / "rose").iterdir())
    photo.write_bytes(photo.read_bytes() + b"\0")  # a photo changed in place: a new scan
    monkeypatch.undo()
    again = scan_dataset(tmp_path)
    assert again is not first and again.fingerprint != first.fingerprint
    assert scan_dataset(tmp_path, use_cache=False) is not again


def age(folder: Path, when: float = 1_700_000_000.0) -> None:
    """Set a folder's and its sub-folders' modification times to a moment long past."""
    import os

    for path in (folder, *(p for p in folder.iterdir() if p.is_dir())):
        os.utime(path, (when, when))


def test_an_unchanged_folder_is_not_listed_again_until_a_photo_comes_or_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path)
    age(tmp_path)
    first = scan_dataset(tmp_path)
    monkeypatch.setattr(data, "_listing", lambda *a: pytest.fail("the folder was listed"))
    assert scan_dataset(tmp_path) is first  # a page's next run: no listing of its photos
    monkeypatch.undo()
    make_photo(tmp_path / "rose" / "new.jpg", (1, 2, 3), seed=99)  # its folder's time moves
    added = scan_dataset(tmp_path)
    assert added.counts()["rose"] == first.counts()["rose"] + 1
    # A photo rewritten in place keeps its folder's time: seen once the listing is too old.
    age(tmp_path)
    kept = scan_dataset(tmp_path)
    photo = next((tmp_path / "tulip").iterdir())
    photo.write_bytes(photo.read_bytes() + b"\0")
    age(tmp_path)
    assert scan_dataset(tmp_path) is kept  # within LISTING_TRUST_SECONDS, as documented
    monkeypatch.setattr(data, "LISTING_TRUST_SECONDS", 0.0)
    assert scan_dataset(tmp_path).fingerprint != kept.fingerprint


@pytest.mark.parametrize(
    "name", ["a.JPG", "a.tar.gz", "photo.", ".jpg", "noext", "a..png", "x.Jpeg"]
)
def test_a_listed_file_has_the_suffix_pathlib_gives_it(name: str) -> None:
    assert data._suffix(name) == Path(name).suffix.lower()


def test_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    make_dataset(tmp_path / "a")
    make_dataset(tmp_path / "b")
    assert scan_dataset(tmp_path / "a").fingerprint == scan_dataset(tmp_path / "b").fingerprint
    make_photo(tmp_path / "b" / "rose" / "rose0.jpg", (9, 9, 9), seed=5)
    assert scan_dataset(tmp_path / "a").fingerprint != scan_dataset(tmp_path / "b").fingerprint


def test_split_is_stratified_disjoint_and_deterministic(sample) -> None:
    split = split_dataset(sample, val_fraction=0.25, seed=7)
    assert set(split.train).isdisjoint(split.val)
    assert len(split.train) + len(split.val) == len(sample.records)
    for name in sample.class_names:
        assert sum(p.startswith(f"{name}/") for p in split.val) == 2  # 25% of 8
    assert split == split_dataset(sample, val_fraction=0.25, seed=7)
    assert split.val != split_dataset(sample, val_fraction=0.25, seed=8).val
    assert type(split).from_json(split.to_json()) == split


def test_split_keeps_old_assignments_when_photos_are_added(tmp_path: Path) -> None:
    make_dataset(tmp_path, per_class=10)
    before = split_dataset(scan_dataset(tmp_path), 0.2, seed=1)
    make_photo(tmp_path / "daisy" / "zz.jpg", (1, 1, 1), seed=3)
    after = split_dataset(scan_dataset(tmp_path), 0.2, seed=1)
    assert len(set(before.val) & set(after.val)) >= len(before.val) - 1


def test_split_refuses_bad_fraction_and_tiny_classes(tmp_path: Path, sample) -> None:
    with pytest.raises(DatasetError, match="between 0 and 1"):
        split_dataset(sample, val_fraction=1.5)
    make_dataset(tmp_path, per_class=1)
    with pytest.raises(DatasetError, match="at least two"):
        split_dataset(scan_dataset(tmp_path))


def grouped_dataset(counts: dict[str, int]):
    """A dataset of fake records, `counts[name]` photos per class, named <class>/<n>.jpg."""
    from flower_model.data.dataset import Dataset, ImageRecord

    names = tuple(sorted(counts))
    records = tuple(
        ImageRecord(f"{name}/{i:02d}.jpg", label, f"{name}{i}", 10, 10, 100)
        for label, name in enumerate(names)
        for i in range(counts[name])
    )
    return Dataset(Path("/nowhere"), names, records, (), "fake")


@pytest.mark.parametrize("seed", range(6))
def test_a_large_group_does_not_swallow_the_held_out_share(seed: int) -> None:
    dataset = grouped_dataset({"a": 20, "b": 10})
    group = [f"a/{i:02d}.jpg" for i in range(10)]
    split = split_dataset(dataset, 0.2, seed, groups=[group])
    held = [p for p in split.val if p.startswith("a/")]
    assert len(held) == 4 and set(group) <= set(split.train)
    # 19 copies of one picture and one other photo: the other is held out, whatever the seed.
    dataset = grouped_dataset({"a": 20, "b": 10})
    copies = [f"a/{i:02d}.jpg" for i in range(19)]
    split = split_dataset(dataset, 0.2, seed, groups=[copies])
    assert [p for p in split.val if p.startswith("a/")] == ["a/19.jpg"]


def test_overlapping_groups_are_one_group_on_one_side() -> None:
    dataset = grouped_dataset({"a": 12, "b": 10})
    for seed in range(10):
        split = split_dataset(
            dataset, 0.2, seed, groups=[["a/00.jpg", "a/01.jpg"], ["a/01.jpg", "a/02.jpg"]]
        )
        sides = {p in split.val for p in ("a/00.jpg", "a/01.jpg", "a/02.jpg")}
        assert len(sides) == 1
        assert split.groups == (("a/00.jpg", "a/01.jpg", "a/02.jpg"),)


def test_a_group_across_classes_counts_for_most_of_its_photos() -> None:
    dataset = grouped_dataset({"a": 6, "b": 3})
    split = split_dataset(dataset, 0.2, 0, groups=[["a/00.jpg", "b/00.jpg", "b/01.jpg"]])
    # b's share is one photo: its single photo is held out, the group (b's by majority) trains.
    assert {"a/00.jpg", "b/00.jpg", "b/01.jpg"} <= set(split.train)
    assert [p for p in split.val if p.startswith("b/")] == ["b/02.jpg"]
    # A class whose every photo is a copy of another class's cannot be held out: said so.
    dataset = grouped_dataset({"a": 2, "b": 6})
    groups = [["a/00.jpg", "b/00.jpg", "b/01.jpg"], ["a/01.jpg", "b/02.jpg", "b/03.jpg"]]
    with pytest.raises(DatasetError, match="duplicates of photos filed under other classes"):
        split_dataset(dataset, 0.2, 0, groups=groups)


def test_a_class_that_is_one_picture_is_refused() -> None:
    dataset = grouped_dataset({"a": 4, "b": 4})
    with pytest.raises(DatasetError, match="one picture and its duplicates"):
        split_dataset(dataset, 0.2, 0, groups=[[f"a/{i:02d}.jpg" for i in range(4)]])


def test_without_groups_the_split_is_the_plain_one() -> None:
    dataset = grouped_dataset({"a": 17, "b": 9, "c": 5})
    for seed in range(5):
        plain = split_dataset(dataset, 0.25, seed)
        assert split_dataset(dataset, 0.25, seed, groups=[]) == plain
        assert plain.groups == ()
        assert [sum(p.startswith(c) for p in plain.val) for c in "abc"] == [4, 2, 1]
