"""Download a Kaggle dataset with kagglehub, reporting its progress to whoever asked for it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flower_model.core.errors import DatasetError

# Kaggle "Flowers Recognition": daisy, dandelion, rose, sunflower, tulip (4,317 photos).
DEFAULT_HANDLE = "alxmamaev/flowers-recognition"

Progress = Callable[[int, int], None]

# Who listens to the download running in each thread (a server downloads for several visitors).
_listeners = threading.local()
_hook_lock = threading.Lock()


def download_dataset(handle: str = DEFAULT_HANDLE, progress: Progress | None = None) -> Path:
    """Return the local folder of a Kaggle dataset, downloaded with kagglehub.

    kagglehub draws its own progress bar on the terminal; `progress(bytes_done, bytes_total)`
    is called as well, for a page's progress bar.
    """
    try:
        import kagglehub
    except ImportError as exc:  # pragma: no cover - kagglehub is in requirements.txt
        raise DatasetError("kagglehub is not installed: pip install kagglehub") from exc
    try:
        with _listening(progress):
            folder = kagglehub.dataset_download(handle)
    except Exception as exc:  # kagglehub raises network, HTTP and auth errors of many types
        raise DatasetError(
            f"could not download '{handle}' from Kaggle: {_download_failure(exc)}. Without "
            "internet, point at a local folder with one sub-folder per class instead (--data DIR)"
        ) from exc
    return Path(folder)


def _install_progress_hook() -> None:
    """Let kagglehub's download bar also tell the listener of the thread it runs in.

    kagglehub takes no progress callback; it streams the archive in the calling thread
    through `kagglehub.clients.tqdm`. That class is replaced, once per process, by a subclass
    that draws the same bar and also calls the current thread's listener, if it has one:
    threads without a listener (and every other user of tqdm) see no difference.
    """
    clients = sys.modules.get("kagglehub.clients")
    base = getattr(clients, "tqdm", None)
    if base is None:
        return
    with _hook_lock:
        if getattr(clients.tqdm, "reports_to_listeners", False):
            return

        class ReportingBar(base):  # type: ignore[misc, valid-type]
            reports_to_listeners = True

            def update(self, n: float | None = 1) -> bool | None:
                shown = super().update(n)
                listener = getattr(_listeners, "progress", None)
                if listener is not None:
                    listener(int(self.n), int(self.total or 0))
                return shown

        clients.tqdm = ReportingBar


@contextmanager
def _listening(progress: Progress | None) -> Iterator[None]:
    """Make `progress` this thread's download listener while the block runs."""
    if progress is None:
        yield
        return
    _install_progress_hook()
    _listeners.progress = progress
    try:
        yield
    finally:
        _listeners.progress = None


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
