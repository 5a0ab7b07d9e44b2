"""Deleting a run takes the app's exports of it along, and nothing of anyone else's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from flower_model.core import workspace
from flower_model.core.errors import RunError
from flower_model.export.exporter import FORMATS, app_export_path
from flower_model.runs.store import METADATA_FILE, list_runs
from flower_model.workflows.cleanup import remove_run
from tests.runs.test_store import fake_run, metadata


def test_a_removed_run_takes_its_exports_and_a_refused_one_keeps_everything(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(workspace.HOME_ENV, str(tmp_path))
    hers = fake_run(workspace.runs_dir(), "20260101-000000-aaaa")
    owned = replace(metadata(hers.name), owner="account:ana@example.org")
    (hers / METADATA_FILE).write_text(json.dumps(owned.to_json()))
    other = fake_run(workspace.runs_dir(), "20260101-000000-bbbb")
    exports = [app_export_path(run, fmt) for run in (hers.name, other.name) for fmt in FORMATS]
    for path in exports:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"zip")

    with pytest.raises(RunError, match="only whoever trained run"):
        remove_run(hers.name, owner="session:ben")
    assert all(path.exists() for path in exports)

    remove_run(hers.name, owner="account:ana@example.org")
    assert [info.run_id for info in list_runs()] == [other.name]
    assert [path for path in exports if path.exists()] == exports[len(FORMATS) :]


def test_a_runs_age_is_the_time_it_recorded(tmp_path: Path) -> None:
    from flower_model.runs.store import get_run

    old = fake_run(tmp_path, "20200101-120000-aaaa")
    meta = replace(metadata(old.name), created="2020-01-01T12:00:00+0000")
    (old / METADATA_FILE).write_text(json.dumps(meta.to_json()))
    assert get_run(old.name, tmp_path).trained_at == 1577880000.0
    # A record whose time cannot be read: the folder's time.
    unreadable = fake_run(tmp_path, "20200102-120000-bbbb")
    meta = replace(metadata(unreadable.name), created="")
    (unreadable / METADATA_FILE).write_text(json.dumps(meta.to_json()))
    assert get_run(unreadable.name, tmp_path).trained_at == unreadable.stat().st_mtime
