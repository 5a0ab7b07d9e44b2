"""Datasets brought through the browser: zips and photos per class, and what is refused."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from flower_model.core import workspace
from flower_model.core.errors import DatasetError
from flower_model.data import uploads
from flower_model.data.dataset import scan_dataset
from flower_model.data.uploads import add_photos, add_zip, create_dataset, delete_dataset


def jpeg(colour: tuple[int, int, int], size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 30), colour).save(buffer, "PNG")
    return buffer.getvalue()


def zipped(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def test_a_zip_of_class_folders_becomes_a_dataset(fresh_home: Path) -> None:
    folder = create_dataset("My garden")
    assert folder.parent == workspace.datasets_dir() and folder.name.startswith("my-garden-")
    daisy = jpeg((250, 250, 250))
    data = zipped(
        {
            "garden/daisy/a.jpg": daisy,
            "garden/daisy/b.png": png((240, 240, 200)),
            "garden/rose/c.JPG": jpeg((200, 0, 30)),
            "garden/rose/notes.txt": b"hello",
            "garden/rose/broken.jpg": b"\xff\xd8 not a jpeg",
            "__MACOSX/garden/rose/._c.JPG": b"junk",
            "loose.jpg": jpeg((1, 2, 3)),
        }
    )
    report = add_zip(folder, data, "garden.zip")
    assert report.added == {"daisy": 2, "rose": 1}
    reasons = {r.path: r.reason for r in report.refused}
    assert reasons["garden/rose/notes.txt"] == "not an image file type (.txt)"
    assert (
        reasons["garden/rose/broken.jpg"]
        == "not an image this app reads (JPEG, PNG, GIF, WebP or BMP)"
    )
    assert "hidden or system" in reasons["__MACOSX/garden/rose/._c.JPG"]
    assert "not inside a class folder" in reasons["loose.jpg"]
    # Original bytes, under names made from their content.
    stored = folder / "daisy" / f"{hashlib.sha256(daisy).hexdigest()[:20]}.jpg"
    assert stored.read_bytes() == daisy
    assert scan_dataset(folder).counts() == {"daisy": 2, "rose": 1}


@pytest.mark.parametrize(
    "name",
    ["../evil/x.jpg", "/etc/evil/x.jpg", "daisy/../../evil.jpg", "C:\\evil\\x.jpg"],
)
def test_zip_paths_out_of_the_dataset_are_refused(fresh_home: Path, name: str) -> None:
    folder = create_dataset("paths")
    report = add_zip(folder, zipped({name: jpeg((9, 9, 9)), "ok/rose/x.jpg": jpeg((200, 0, 0))}))
    assert report.added == {"rose": 1}
    assert report.refused[0].reason == "an absolute or '..' path (refused)"
    assert not any("evil" in str(p) for p in fresh_home.parent.rglob("*"))


def test_zip_links_are_refused(fresh_home: Path) -> None:
    folder = create_dataset("links")
    report = add_zip(folder, zipped({}, links={"daisy/passwd.jpg": "/etc/passwd"}))
    assert report.added == {} and report.refused[0].reason == "a symbolic link (refused)"
    assert not list(folder.rglob("*.jpg"))


def test_zip_bombs_are_refused(fresh_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = create_dataset("bombs")
    zeros = b"\0" * (5 * 2**20)  # deflates about 1000 to 1
    report = add_zip(folder, zipped({"daisy/zeros.png": zeros, "rose/r.jpg": jpeg((200, 0, 0))}))
    assert report.refused[0].reason == "inflates like a zip bomb (refused)"
    monkeypatch.setattr(uploads, "MAX_DATASET_BYTES", 4 * 2**20)
    with pytest.raises(DatasetError, match="bomb.zip: it would inflate to 5 MB, over the 4 MB"):
        add_zip(folder, zipped({"daisy/zeros.png": zeros}), "bomb.zip")
    with pytest.raises(DatasetError, match="junk.zip: not a zip file"):
        add_zip(folder, b"PK\x03\x04 but no zip", "junk.zip")


def test_a_damaged_zip_is_refused_in_one_line(fresh_home: Path) -> None:
    folder = create_dataset("damaged")
    data = bytearray(zipped({"daisy/a.png": png((250, 250, 250)) * 20}))
    middle = len(data) // 3
    data[middle : middle + 40] = b"\x55" * 40  # inside the deflated bytes
    with pytest.raises(DatasetError, match="broken.zip: the zip cannot be read"):
        add_zip(folder, bytes(data), "broken.zip")


def test_all_uploads_together_have_a_limit(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = create_dataset("first")
    add_photos(first, "rose", [("a.jpg", jpeg((200, 0, 0)))])
    # The host's setting, in gigabytes: room for the first photo and 10 bytes.
    monkeypatch.setenv(uploads.TOTAL_GB_ENV, str((len(jpeg((200, 0, 0))) + 10) / 2**30))
    report = add_photos(create_dataset("second"), "tulip", [("t.jpg", jpeg((9, 9, 200)))])
    assert report.added == {}
    assert "uploaded datasets would exceed their limit" in report.refused[0].reason


def test_photos_per_class_with_duplicates_and_limits(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = create_dataset("classes")
    red = jpeg((200, 0, 0))
    report = add_photos(
        folder, "rose", [("a.jpg", red), ("again.jpg", red), ("b.png", png((9,) * 3))]
    )
    assert report.added == {"rose": 2}
    assert report.refused[0].reason == "already in this class (the same bytes)"
    with pytest.raises(DatasetError, match="cannot be a class name"):
        add_photos(folder, "../up", [("a.jpg", red)])
    with pytest.raises(DatasetError, match="cannot be a class name"):
        add_photos(folder, ".hidden", [("a.jpg", red)])
    monkeypatch.setenv(uploads.PHOTOS_ENV, "3")  # the host's setting
    report = add_photos(
        folder, "tulip", [("t1.jpg", jpeg((1, 1, 200))), ("t2.jpg", jpeg((2, 2, 9)))]
    )
    assert report.added == {"tulip": 1}
    assert report.refused[0].reason == "the dataset already holds its limit of 3 photos"
    monkeypatch.delenv(uploads.PHOTOS_ENV)
    monkeypatch.setattr(uploads, "MAX_DATASET_BYTES", 1)  # the default, when unset
    report = add_photos(folder, "new", [("n.jpg", jpeg((5, 5, 5)))])
    assert "would exceed its limit" in report.refused[0].reason


@pytest.mark.parametrize("value", ["many", "0", "-3", "inf", "nan"])
def test_a_bad_upload_limit_is_named_in_one_line(
    value: str, fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(uploads.DATASET_MB_ENV, value)
    with pytest.raises(DatasetError, match=r"^\$FLOWER_LENS_UPLOAD_DATASET_MB must be a number"):
        add_photos(create_dataset("limits"), "rose", [("a.jpg", jpeg((200, 0, 0)))])


def test_only_uploaded_datasets_can_be_added_to_or_deleted(
    fresh_home: Path, tmp_path: Path
) -> None:
    folder = create_dataset("to delete")
    add_photos(folder, "rose", [("a.jpg", jpeg((200, 0, 0)))])
    outside = tmp_path / "precious"
    outside.mkdir()
    for action in (lambda: delete_dataset(outside), lambda: add_photos(outside, "x", [])):
        with pytest.raises(DatasetError, match="not an uploaded dataset"):
            action()
    assert outside.exists()
    with pytest.raises(DatasetError, match="not an uploaded dataset"):
        delete_dataset(workspace.datasets_dir())
    delete_dataset(folder)
    assert not folder.exists()


def test_a_new_dataset_that_gets_nothing_is_not_left_behind(fresh_home: Path) -> None:
    from flower_model.data.uploads import create_dataset_with

    report = create_dataset_with("empty", lambda f: add_photos(f, "rose", [("x.jpg", b"junk")]))
    assert report.total_added == 0 and not report.dataset.exists()
    with pytest.raises(DatasetError):
        create_dataset_with("broken", lambda f: add_zip(f, b"not a zip"))
    assert not list(workspace.datasets_dir().iterdir())
    kept = create_dataset_with(
        "kept", lambda f: add_photos(f, "rose", [("a.jpg", jpeg((9, 9, 9)))])
    )
    assert kept.dataset.is_dir() and kept.total_added == 1
