"""The server's shelf of loaded models: loaded once, in the background, ahead of use."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from flower_model.service.shelf import Shelf

WAIT = 30  # seconds: a bound on every wait, never reached when the code is right


class Loads:
    """A loader that counts its loads by name and waits for `gate` before each."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.counts: dict[str, int] = {}
        self.fail: set[str] = set()

    def __call__(self, name: str) -> str:
        assert self.gate.wait(WAIT)
        self.counts[name] = self.counts.get(name, 0) + 1
        if name in self.fail:
            raise ValueError(f"cannot read {name}")
        return f"model {name}"


def test_prepare_returns_before_the_load_and_get_waits_for_it() -> None:
    loads = Loads()
    shelf = Shelf(loads)
    future = shelf.prepare("a")  # returns while the load is held at the gate
    assert not future.done() and not shelf.ready("a")
    loads.gate.set()
    assert shelf.get("a") == "model a"
    assert shelf.ready("a")


def test_a_model_is_loaded_once_for_every_visitor_asking() -> None:
    loads = Loads()
    shelf = Shelf(loads)
    with ThreadPoolExecutor(8) as visitors:
        asked = [visitors.submit(shelf.get, "a") for _ in range(8)]
        loads.gate.set()
        assert {f.result(WAIT) for f in asked} == {"model a"}
    assert shelf.get("a") == "model a"
    assert loads.counts == {"a": 1}


def test_a_failed_load_raises_its_error_and_is_tried_again() -> None:
    loads = Loads()
    loads.gate.set()
    loads.fail.add("broken")
    shelf = Shelf(loads)
    with pytest.raises(ValueError, match="cannot read broken"):
        shelf.get("broken")
    assert not shelf.ready("broken")
    loads.fail.clear()
    assert shelf.get("broken") == "model broken"
    assert loads.counts == {"broken": 2}


def test_the_least_recently_asked_model_is_given_up_first() -> None:
    loads = Loads()
    loads.gate.set()
    shelf = Shelf(loads, size=2)
    shelf.get("a")
    shelf.get("b")
    shelf.get("a")  # a asked after b: b is the one given up
    shelf.get("c")
    assert shelf.ready("a") and shelf.ready("c") and not shelf.ready("b")
    shelf.get("a")
    assert loads.counts == {"a": 1, "b": 1, "c": 1}
    shelf.get("b")
    assert loads.counts == {"a": 1, "b": 2, "c": 1}
