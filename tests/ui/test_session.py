"""The app's process-wide helpers that need no page: what the server freezes, and when."""

from __future__ import annotations

import gc
import json
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
    monkeypatch.setattr(session.runtime, "load_before_tensorflow", lambda: None)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    session.settle_server()
    assert settled == [session.PAGE_MODULES]
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    session.settle_server()
    assert settled == [session.PAGE_MODULES, session.PAGE_MODULES, session.MODEL_MODULES]


def test_ice_servers_come_from_the_setting_or_are_none(monkeypatch) -> None:
    from flower_model.core.errors import FlowerLensError

    monkeypatch.delenv(session.ICE_SERVERS_ENV, raising=False)
    assert session.ice_servers() == []
    servers = [{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "c"}]
    monkeypatch.setenv(session.ICE_SERVERS_ENV, json.dumps(servers))
    assert session.ice_servers() == servers
    for bad in ("{not json", '{"urls": "stun:x"}', '[{"url": "stun:x"}]'):
        monkeypatch.setenv(session.ICE_SERVERS_ENV, bad)
        with pytest.raises(FlowerLensError) as caught:
            session.ice_servers()
        assert "\n" not in str(caught.value) and session.ICE_SERVERS_ENV in str(caught.value)


def test_uploaded_videos_are_kept_by_content_and_only_the_latest_few(fresh_home) -> None:
    first = session.kept_upload("a.mp4", b"video a")
    assert (
        session.kept_upload("again.mp4", b"video a") == first and first.read_bytes() == b"video a"
    )
    for i in range(session.VIDEOS_KEPT + 3):
        session.kept_upload(f"{i}.webm", f"video {i}".encode())
    assert len(list(first.parent.iterdir())) == session.VIDEOS_KEPT


def test_the_job_board_outlives_a_visitors_clear_cache_and_a_restart_closes_it(
    monkeypatch,
) -> None:
    """Any browser may ask Streamlit to clear its caches (st.cache_resource included): the
    board that knows the running jobs is not in them."""
    import streamlit as st

    class Board:
        closed = 0

        def close(self) -> None:
            Board.closed += 1

    session.forget_job_board()  # whatever an earlier test in this process made
    monkeypatch.setattr(session, "JobBoard", Board)
    monkeypatch.delenv("FLOWER_LENS_CLUSTER", raising=False)
    board = session.job_board()
    st.cache_resource.clear()  # what a browser's "clear cache" does on the server
    assert session.job_board() is board and Board.closed == 0
    session.forget_job_board()
    assert Board.closed == 1 and session.job_board() is not board
    session.forget_job_board()
