"""The data roots: what the app may read, and the datasets it lists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flower_model.core import workspace
from flower_model.core.errors import DatasetError
from flower_model.data.roots import ROOTS_ENV, DataRoots, data_roots
from tests.conftest import make_photo


def dataset(folder: Path, classes=("daisy", "rose")) -> Path:
    for i, name in enumerate(classes):
        make_photo(folder / name / "a.jpg", (200, 40 * i, 40), seed=i, size=(32, 24))
    return folder


def roots_of(*shared: Path) -> DataRoots:
    return DataRoots(shared=tuple(p.resolve() for p in shared), own=(), listed=True)


def test_only_paths_under_a_root_are_allowed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "flowers").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    roots = roots_of(shared)
    assert roots.allows(shared) and roots.allows(shared / "flowers")
    assert not roots.allows(tmp_path / "private")
    assert not roots.allows(Path("/proc"))
    # `..` and symlinks are resolved before the check.
    assert not roots.allows(shared / ".." / "private")
    (shared / "escape").symlink_to(tmp_path / "private")
    assert not roots.allows(shared / "escape")
    # A folder merely named like a root is not inside it.
    (tmp_path / "shared-not").mkdir()
    assert not roots.allows(tmp_path / "shared-not")


def test_a_refusal_names_the_setting_and_what_to_do(tmp_path: Path) -> None:
    roots = roots_of(tmp_path / "shared")
    with pytest.raises(DatasetError, match=f"/proc is outside .*\\${ROOTS_ENV} is .*shared"):
        roots.check(Path("/proc"))
    assert roots.check(tmp_path / "shared" / "x" / "..") == (tmp_path / "shared").resolve()


def test_roots_come_from_the_setting_else_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    monkeypatch.setenv(workspace.DATA_ENV, str(tmp_path / "data"))
    roots = data_roots()
    assert roots.shared == ((tmp_path / "data").resolve(),) and not roots.listed
    # The app's own folders are always roots: downloads and uploaded datasets.
    assert roots.own == ((tmp_path / "kaggle").resolve(), workspace.datasets_dir().resolve())
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    roots = data_roots()
    assert roots.shared == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    assert roots.listed
    monkeypatch.delenv(ROOTS_ENV)
    monkeypatch.delenv(workspace.DATA_ENV)
    assert data_roots().shared == ()


def test_datasets_lists_class_folders_under_the_roots_only(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    one = dataset(shared / "flowers")
    two = dataset(shared / "course" / "week2" / "leaves", classes=("oak", "ash", "elm"))
    dataset(shared / ".hidden" / "secret")
    dataset(tmp_path / "private" / "photos")
    (shared / "link-out").symlink_to(tmp_path / "private")
    (shared / "empty").mkdir()
    assert roots_of(shared).datasets() == (two.resolve(), one.resolve())  # sorted by path


@pytest.mark.parametrize("bad", ["/srv/data\0/x", "/" + "x" * 300, "a/" * 3000])
def test_unusable_names_are_refused_in_one_line_not_a_traceback(tmp_path: Path, bad: str) -> None:
    from flower_model.data.dataset import find_class_root

    roots = roots_of(tmp_path)
    assert not roots.allows(Path(bad))
    with pytest.raises(DatasetError):
        roots.check(Path(bad))
    with pytest.raises(DatasetError):
        find_class_root(tmp_path / bad.lstrip("/"))
