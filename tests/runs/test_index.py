"""The runs' index: a list of runs reads one small file, and follows what changed on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_model.runs import store as store_module
from flower_model.runs.index import INDEX_FILE, read_index
from flower_model.runs.metadata import RunMetadata
from flower_model.runs.store import METADATA_FILE, scan_runs
from tests.runs.test_store import fake_run, metadata


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the runs whose whole metadata is parsed (the in-process memo forgotten)."""
    store_module._read_stamped.cache_clear()
    parsed: list[str] = []
    real = RunMetadata.from_json

    def counted(value):
        parsed.append(value.get("run_id"))
        return real(value)

    monkeypatch.setattr(RunMetadata, "from_json", counted)
    return parsed


def test_listing_runs_reads_each_runs_metadata_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"2026010{i}-000000-aaaa" for i in range(1, 6)]
    for i, run_id in enumerate(ids):
        fake_run(tmp_path, run_id, accuracy=i / 10)
    parsed = count_reads(monkeypatch)
    runs, broken = scan_runs(tmp_path)
    assert sorted(parsed) == ids and broken == []
    # Another process lists them from the index alone, summaries and all.
    parsed = count_reads(monkeypatch)
    again, _ = scan_runs(tmp_path)
    assert parsed == [] and again == runs
    assert [r.accuracy for r in again] == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0])
    assert again[0].describe() == runs[0].describe() and again[0].summary.photos == 20
    # The whole metadata is read when asked for.
    assert again[0].metadata.split.val[0] == "a/0.jpg" and parsed == [ids[-1]]


def test_a_changed_removed_or_damaged_run_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = (
        fake_run(tmp_path, f"2026010{i}-000000-aaaa", accuracy=0.5) for i in (1, 2, 3)
    )
    scan_runs(tmp_path)
    parsed = count_reads(monkeypatch)
    # Rewritten (a longer file, as a copy from elsewhere would be), removed, damaged.
    (first / METADATA_FILE).write_text(json.dumps(metadata(first.name, 0.9).to_json(), indent=2))
    for path in second.iterdir():
        path.unlink()
    second.rmdir()
    (third / METADATA_FILE).write_text("{cut short")
    runs, broken = scan_runs(tmp_path)
    assert parsed == [first.name]
    assert [(r.run_id, r.accuracy) for r in runs] == [(first.name, pytest.approx(0.9))]
    assert [(b.run_id, b.reason) for b in broken] == [
        (third.name, f"{METADATA_FILE}: not valid JSON (cut short?)")
    ]
    assert set(read_index(tmp_path)) == {first.name, third.name}
    # A damaged index is rebuilt from the runs.
    (tmp_path / INDEX_FILE).write_text("[not an index")
    parsed = count_reads(monkeypatch)
    assert scan_runs(tmp_path)[0] == runs and parsed == [first.name]
