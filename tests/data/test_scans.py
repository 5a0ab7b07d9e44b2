"""The scan store: segments of new findings, compacted when stale; a bad segment is read again."""

from __future__ import annotations

from pathlib import Path

import pytest

from flower_model.data import scans
from flower_model.data.scans import Found


def finding(i: int) -> tuple[scans.FileStamp, scans.Finding]:
    stamp = (f"daisy/{i}.jpg", 100 + i, 1_700_000_000_000_000_000 + i)
    return stamp, (Found("daisy", f"{i:064x}", 32, 24, 100 + i), None)


def live_of(numbers) -> dict:
    return dict(finding(i) for i in numbers)


def test_a_few_new_files_are_written_as_a_segment_of_their_own(tmp_path: Path) -> None:
    store = tmp_path / "store"
    scans.write(store, scans.read(store), live_of(range(100)), live_of(range(100)))
    assert len(scans.read(store).segments) == 1
    known = scans.read(store)
    scans.write(store, known, live_of(range(105)), live_of(range(100, 105)))
    again = scans.read(store)
    assert len(again.segments) == 2 and again.rows == 105
    assert again.findings == live_of(range(105))
    # The second segment holds the five new files alone.
    assert len(scans._decode(again.segments[1])) == 5


def test_many_stale_rows_are_compacted_into_one_segment(tmp_path: Path) -> None:
    store = tmp_path / "store"
    scans.write(store, scans.read(store), live_of(range(100)), live_of(range(100)))
    scans.write(store, scans.read(store), live_of(range(110)), live_of(range(100, 110)))
    kept = live_of(range(50, 110))  # 50 files gone: past the share kept stale
    scans.write(store, scans.read(store), kept, [])
    known = scans.read(store)
    assert len(known.segments) == 1 and known.rows == 60 and known.findings == kept


def test_an_unreadable_or_old_segment_is_passed_over(tmp_path: Path) -> None:
    store = tmp_path / "store"
    scans.write(store, scans.read(store), live_of(range(10)), live_of(range(10)))
    (store / "00000000000000000001-1-bad.json").write_text("{not json")
    (store / "00000000000000000002-1-old.json").write_text('{"version": 2, "files": []}')
    known = scans.read(store)
    assert known.findings == live_of(range(10)) and known.rows == 10
    # The next compaction removes them.
    scans.write(store, known, live_of(range(11)), live_of(range(10, 11)))
    assert len(scans.read(store).segments) == 4  # a small addition: a segment more
    scans.write(store, scans.read(store), live_of(range(5)), [])
    assert len(scans.read(store).segments) == 1


def test_unusable_files_keep_their_reason(tmp_path: Path) -> None:
    store = tmp_path / "store"
    stamp = ("daisy/broken.jpg", 6, 7)
    live = {stamp: (None, "not a readable image"), **live_of(range(3))}
    scans.write(store, scans.read(store), live, live)
    assert scans.read(store).findings[stamp] == (None, "not a readable image")


def test_a_read_only_store_loses_only_the_time(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(scans.workspace, "write_atomic", refuse)
    store = tmp_path / "store"
    scans.write(store, scans.read(store), live_of(range(3)), live_of(range(3)))
    assert scans.read(store).findings == {}


@pytest.mark.parametrize("count", [0, 1])
def test_the_single_file_of_version_2_is_removed_when_compacting(tmp_path: Path, count) -> None:
    store = tmp_path / "store"
    legacy = store.with_suffix(".json")
    legacy.write_text("{}")
    scans.write(store, scans.read(store), live_of(range(count)), live_of(range(count)))
    assert not legacy.exists() and scans.bytes_used(store) > 0
