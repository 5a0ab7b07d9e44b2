"""Downloading a Kaggle dataset: kagglehub (faked: no network here), errors, progress."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import pytest

from flower_model.core.errors import DatasetError
from flower_model.data import download
from flower_model.data.dataset import scan_dataset
from flower_model.data.download import DEFAULT_HANDLE, download_dataset
from tests.conftest import make_photo


def fake_kagglehub(
    monkeypatch: pytest.MonkeyPatch, download, cache: Path | None = None
) -> list[str]:
    calls: list[str] = []

    def dataset_download(handle: str, *args, **kwargs) -> str:
        calls.append(handle)
        return str(download(handle))

    folder = str(cache or Path.home() / ".cache" / "kagglehub")
    config = types.SimpleNamespace(get_cache_folder=lambda: folder)
    module = types.SimpleNamespace(dataset_download=dataset_download, config=config)
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    return calls


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """kagglehub's cache folder ($KAGGLEHUB_CACHE), where a fake download writes."""
    return tmp_path / "kagglehub"


def streaming(cache: Path, folder: Path, chunks: int = 3, pause: float = 0.3):
    """Return a fake download that writes `chunks` chunks of 100 bytes into kagglehub's
    cache folder of the dataset, as kagglehub's streamed archive grows there."""

    def download(handle: str) -> Path:
        archive = cache / "datasets" / handle / "1.archive"
        archive.parent.mkdir(parents=True, exist_ok=True)
        with archive.open("wb") as file:
            for _ in range(chunks):
                file.write(bytes(100))
                file.flush()
                time.sleep(pause)
        return folder

    return download


@pytest.mark.parametrize(
    ("handle", "layout", "classes"),
    [
        (DEFAULT_HANDLE, "flowers", ("daisy", "dandelion", "rose", "sunflower", "tulip")),
        (
            "someone/flower-photos",
            "flower_photos",
            ("daisy", "dandelion", "roses", "sunflowers", "tulips"),
        ),
    ],
)
def test_download_uses_kagglehub_and_finds_the_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handle: str, layout: str, classes
) -> None:
    cache = tmp_path / "kagglehub" / "datasets" / handle / "versions" / "1"
    for name in classes:
        make_photo(cache / layout / name / "a.jpg", (200, 10, 10), seed=1)
        make_photo(cache / layout / name / "b.jpg", (10, 200, 10), seed=2)
    calls = fake_kagglehub(monkeypatch, lambda h: cache)
    folder = download_dataset(handle)
    assert calls == [handle]
    dataset = scan_dataset(folder)
    assert dataset.root == cache / layout
    assert dataset.class_names == tuple(sorted(classes))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionError("Max retries exceeded (NameResolutionError)"), "no connection to Kaggle"),
        (RuntimeError("403 Client Error: Forbidden"), "refused the request"),
        (RuntimeError("404 Client Error: Not Found"), "no dataset with that handle"),
    ],
)
def test_download_failure_is_one_clear_sentence(
    monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str
) -> None:
    def fail(handle):
        raise error

    fake_kagglehub(monkeypatch, fail)
    with pytest.raises(DatasetError) as caught:
        download_dataset("owner/flowers")
    message = str(caught.value)
    assert expected in message and "local folder" in message and "\n" not in message


def test_download_progress_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.setattr(download, "PROGRESS_SECONDS", 0.05)
    fake_kagglehub(monkeypatch, streaming(cache, tmp_path), cache)
    seen: list[tuple[int, int]] = []
    assert download_dataset("owner/flowers", progress=lambda d, t: seen.append((d, t))) == tmp_path
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 300  # growing, to the whole download
    assert {100, 200} <= set(done)  # told while it ran, not only at the end
    assert {t for _, t in seen} == {0}  # kagglehub does not tell the total


def test_progress_goes_only_to_the_download_that_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    # Two visitors of one server download at once: each bar hears only its own download.
    monkeypatch.setattr(download, "PROGRESS_SECONDS", 0.05)
    sizes = {"a/small": 2, "b/large": 5}

    def fetch(handle: str) -> Path:
        return streaming(cache, tmp_path, sizes[handle])(handle)

    fake_kagglehub(monkeypatch, fetch, cache)
    seen: dict[str, list[int]] = {handle: [] for handle in sizes}
    start = threading.Barrier(len(sizes))

    def visitor(handle: str) -> None:
        start.wait()
        download_dataset(handle, progress=lambda d, t: seen[handle].append(d))

    threads = [threading.Thread(target=visitor, args=(h,)) for h in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert max(seen["a/small"]) == 200 and seen["a/small"][-1] == 200
    assert max(seen["b/large"]) == 500 and seen["b/large"][-1] == 500
    # A second download of a dataset already in the cache counts only what it adds.
    again: list[int] = []
    assert download_dataset("a/small", progress=lambda d, t: again.append(d)) == tmp_path
    assert again[-1] == 0
