"""Download a Kaggle dataset with kagglehub, reporting its progress to whoever asked for it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from flower_model.core import workspace
from flower_model.core.errors import DatasetError

# Kaggle "Flowers Recognition": daisy, dandelion, rose, sunflower, tulip (4,317 photos).
DEFAULT_HANDLE = "alxmamaev/flowers-recognition"

Progress = Callable[[int, int], None]
# How often a download's progress is told, in seconds.
PROGRESS_SECONDS = 0.5


def download_dataset(handle: str = DEFAULT_HANDLE, progress: Progress | None = None) -> Path:
    """Return the local folder of a Kaggle dataset, downloaded with kagglehub.

    kagglehub draws its own progress bar on the terminal and takes no callback, so
    `progress(bytes_so_far, 0)` is told what has been written to kagglehub's cache folder of
    this dataset, every PROGRESS_SECONDS while the download runs (the total is not known).
    """
    try:
        import kagglehub
    except ImportError as exc:  # pragma: no cover - kagglehub is in requirements.txt
        raise DatasetError("kagglehub is not installed: pip install kagglehub") from exc
    try:
        with _watching(_cache_folder_of(kagglehub, handle), progress):
            folder = kagglehub.dataset_download(handle)
    except Exception as exc:  # kagglehub raises network, HTTP and auth errors of many types
        raise DatasetError(
            f"could not download '{handle}' from Kaggle: {_download_failure(exc)}. Without "
            "internet, point at a local folder with one sub-folder per class instead (--data DIR)"
        ) from exc
    return Path(folder)


def _cache_folder_of(kagglehub: ModuleType, handle: str) -> Path:
    """Return the folder kagglehub downloads a dataset into: `datasets/<owner>/<name>` under
    its cache folder ($KAGGLEHUB_CACHE, by default ~/.cache/kagglehub)."""
    owner, _, rest = handle.partition("/")
    name = rest.split("/")[0]
    return Path(kagglehub.config.get_cache_folder()) / "datasets" / owner / name


@contextmanager
def _watching(folder: Path, progress: Progress | None) -> Iterator[None]:
    """Tell `progress` how many bytes the folder gains while the block runs, from a thread
    of its own, and once more at the end."""
    if progress is None:
        yield
        return
    before = workspace.bytes_under(folder)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(PROGRESS_SECONDS):
            progress(max(0, workspace.bytes_under(folder) - before), 0)

    watcher = threading.Thread(target=watch, name="flower-lens-download", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
    progress(max(0, workspace.bytes_under(folder) - before), 0)


def _download_failure(exc: Exception) -> str:
    """Return in a few words why a kagglehub download failed."""
    text = f"{type(exc).__name__}: {exc}"
    if any(
        word in text for word in ("NameResolution", "Max retries", "ConnectionError", "timed out")
    ):
        return "no connection to Kaggle (offline?)"
    if any(code in text for code in ("401", "403", "Unauthorized", "Forbidden")):
        return (
            "Kaggle refused the request; sign in with kagglehub.login() or set "
            "KAGGLE_USERNAME and KAGGLE_KEY"
        )
    if "404" in text or "NotFound" in text:
        return "Kaggle has no dataset with that handle"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first[:160]
