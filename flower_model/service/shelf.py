"""The models a server keeps loaded, each loaded once, in the background, ahead of its use."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Model = TypeVar("Model")


class Shelf(Generic[Model]):
    """At most `size` models by name, the least recently asked for given up first.

    `prepare` starts loading a model on one background thread and returns at once, so a page
    can ask for its model when it opens and have it ready when the visitor's first photo
    comes (loading a run's classifier took 6.9 s at the first photo dropped, measured in
    Chromium). `get` waits for it. One loading thread: two loads at once would share the
    same CPUs and each take as long as both. A load that failed is forgotten, so the next
    `get` tries again and raises its error to whoever asked.
    """

    def __init__(self, load: Callable[[str], Model], size: int = 3) -> None:
        self._load = load
        self._size = size
        self._models: OrderedDict[str, Future[Model]] = OrderedDict()
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-shelf")

    def prepare(self, name: str) -> Future[Model]:
        """Return the future of the model `name`, starting its load if it is not on the shelf."""
        with self._lock:
            future = self._models.get(name)
            if future is None or (future.done() and future.exception() is not None):
                future = self._loader.submit(self._load, name)
                self._models[name] = future
            self._models.move_to_end(name)
            while len(self._models) > self._size:
                self._models.popitem(last=False)
            return future

    def ready(self, name: str) -> bool:
        """Return whether the model `name` is loaded (a failed load is not ready)."""
        with self._lock:
            future = self._models.get(name)
        return future is not None and future.done() and future.exception() is None

    def get(self, name: str) -> Model:
        """Return the model `name`, waiting for its load; raise the load's error if it failed."""
        return self.prepare(name).result()
