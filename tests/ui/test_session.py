"""The app's process-wide helpers that need no page: what the server freezes, and when."""

from __future__ import annotations

import gc
import sys
import types

import pytest

from flower_model.ui import session


def test_a_servers_imports_are_imported_then_frozen_once_per_set() -> None:
    modules = ("colorsys",)
    sys.modules.pop("colorsys", None)

    class Made:
        pass

    def tracked(thing: Made) -> bool:
        return any(o is thing for o in gc.get_objects())

    earlier = Made()
    try:
        assert session.settle_imports(modules) == modules
        assert "colorsys" in sys.modules
        assert not tracked(earlier)  # frozen: no collection walks it
        later = Made()
        session.settle_imports(modules)  # the same set again: cached, nothing frozen
        assert tracked(later)
    finally:
        gc.unfreeze()
        session.settle_imports.clear()


def test_tensorflows_objects_are_frozen_only_once_a_page_has_loaded_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settled: list[tuple[str, ...]] = []
    monkeypatch.setattr(session, "settle_imports", settled.append)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    session.settle_server()
    assert settled == [session.PAGE_MODULES]
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    session.settle_server()
    assert settled == [session.PAGE_MODULES, session.PAGE_MODULES, session.MODEL_MODULES]
