"""Downloading a Kaggle dataset: kagglehub (faked: no network here), errors, progress."""

from __future__ import annotations

import io
import sys
import threading
import types
from pathlib import Path

import pytest

from flower_model.core.errors import DatasetError
from flower_model.data.dataset import scan_dataset
from flower_model.data.download import DEFAULT_HANDLE, download_dataset
from tests.conftest import make_photo


def fake_kagglehub(monkeypatch: pytest.MonkeyPatch, download) -> list[str]:
    calls: list[str] = []

    def dataset_download(handle: str, *args, **kwargs) -> str:
        calls.append(handle)
        return str(download(handle))

    monkeypatch.setitem(
        sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download)
    )
    return calls


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """kagglehub's HTTP client module, as far as its progress bar goes."""
    from tqdm import tqdm

    module = types.SimpleNamespace(tqdm=tqdm)
    monkeypatch.setitem(sys.modules, "kagglehub.clients", module)
    return module


def streaming(clients: types.SimpleNamespace, folder: Path, chunks: int = 3):
    """Return a fake download that streams `chunks` chunks of 100 bytes as kagglehub does."""

    def download(handle: str) -> Path:
        with clients.tqdm(total=100 * chunks, file=io.StringIO()) as bar:
            for _ in range(chunks):
                bar.update(100)
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients
) -> None:
    fake_kagglehub(monkeypatch, streaming(clients, tmp_path))
    seen: list[tuple[int, int]] = []
    assert download_dataset("owner/flowers", progress=lambda d, t: seen.append((d, t))) == tmp_path
    assert seen == [(100, 300), (200, 300), (300, 300)]


def test_progress_goes_only_to_the_thread_that_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients
) -> None:
    # Two visitors of one server download at once: each bar hears only its own download.
    sizes = {"a/small": 2, "b/large": 5}

    def download(handle: str) -> Path:
        return streaming(clients, tmp_path, sizes[handle])(handle)

    fake_kagglehub(monkeypatch, download)
    seen: dict[str, list[tuple[int, int]]] = {handle: [] for handle in sizes}
    start = threading.Barrier(len(sizes))

    def visitor(handle: str) -> None:
        start.wait()
        download_dataset(handle, progress=lambda d, t: seen[handle].append((d, t)))

    threads = [threading.Thread(target=visitor, args=(h,)) for h in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen["a/small"] == [(100, 200), (200, 200)]
    assert seen["b/large"] == [(100 * i, 500) for i in range(1, 6)]
    # Afterwards, a download nobody listens to reports to nobody, and still works.
    before = {handle: list(events) for handle, events in seen.items()}
    assert download_dataset("a/small") == tmp_path
    assert seen == before
