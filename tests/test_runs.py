"""The model store: only completely saved runs exist; ids, prefixes and 'latest'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_model.errors import RunError
from flower_model.runs import (
    METADATA_FILE,
    MODEL_FILE,
    RunWriter,
    get_run,
    list_runs,
    partial_runs,
    read_events,
)


def fake_run(root: Path, run_id: str, accuracy: float = 0.5) -> Path:
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(b"model")
    meta = {"run_id": run_id, "class_names": ["a", "b"], "evaluation": {"accuracy": accuracy}}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def test_runs_are_listed_newest_first_and_found_by_prefix(tmp_path: Path) -> None:
    fake_run(tmp_path, "20260101-000000-aaaa")
    fake_run(tmp_path, "20260102-000000-bbbb", accuracy=0.9)
    assert [r.run_id for r in list_runs(tmp_path)] == [
        "20260102-000000-bbbb",
        "20260101-000000-aaaa",
    ]
    assert get_run("latest", tmp_path).accuracy == 0.9
    assert get_run("20260101", tmp_path).run_id == "20260101-000000-aaaa"
    with pytest.raises(RunError, match="2 runs match"):
        get_run("2026", tmp_path)
    with pytest.raises(RunError, match="no run matches 'zzz'"):
        get_run("zzz", tmp_path)


def test_no_runs_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="train one first"):
        get_run("latest", tmp_path)


def test_unfinished_runs_are_never_listed(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path)
    writer.log_event({"kind": "start"})
    no_model = fake_run(tmp_path, "20260103-000000-cccc")
    (no_model / MODEL_FILE).unlink()
    torn = fake_run(tmp_path, "20260104-000000-dddd")
    (torn / METADATA_FILE).write_text("{not json")
    assert list_runs(tmp_path) == []
    assert partial_runs(tmp_path) == [writer.partial]
    assert read_events(writer.partial) == [{"kind": "start"}]
    writer.discard()
    assert partial_runs(tmp_path) == []


def test_torn_last_event_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"kind": "start"}\n{"kind": "ba')
    assert read_events(tmp_path) == [{"kind": "start"}]
