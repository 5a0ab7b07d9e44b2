"""The store of feature rows: segments, a writer cut short, processes appending at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flower_model.features import store as store_module
from flower_model.features.cache import FeatureCache
from flower_model.features.store import RowStore, forget_indexes
from tests.features.appender import append_rows
from tests.features.test_cache import stored


def test_segments_roll_over_and_a_writer_cut_short_is_repaired(
    fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SEGMENT_ROWS", 8)
    cache = FeatureCache("segments")
    hashes, rows = stored(cache, 20, seed=1)
    names = sorted(p.name for p in cache.store.folder.iterdir() if p.suffix != ".lock")
    assert names == [
        "000001.f16", "000001.key", "000002.f16", "000002.key",
        "000003.f16", "000003.key", "000004.f32", "000004.key",
    ]  # fmt: skip
    # A writer killed after its rows and before their keys: the rows are cut off at the
    # next write, and nothing is found that has no key.
    last = cache.store.folder / "000003.f16"  # 3 rows of 8
    with last.open("ab") as file:
        file.write(b"\0" * 4096 * 2)
    forget_indexes()
    assert cache.count() == 20
    more, more_rows = stored(cache, 3, seed=2)
    features, found = cache.get_many([*hashes, *more])
    assert found.all()
    np.testing.assert_array_equal(features, np.concatenate([rows, more_rows]))


def test_processes_appending_at_once_lose_and_repeat_nothing(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=append_rows, args=(str(tmp_path), start)) for start in (0, 30, 30)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    store = RowStore(tmp_path, 4)
    keys = [i.to_bytes(32, "big") for i in range(90)]
    rows, found = store.read(keys)
    assert found.all() and len(store) == 90
    assert (tmp_path / "000001.key").stat().st_size == 90 * 32  # each photo once
    # Each row is the one its first writer wrote: a multiple of 3 at most 2 below its key.
    assert all(0 <= i - rows[i, 0] <= 2 and rows[i, 0] % 3 == 0 for i in range(90))


def test_a_cache_copied_into_another_keeps_both_and_a_rewritten_segment_is_noticed(
    fresh_home, tmp_path: Path
) -> None:
    import shutil

    mine = FeatureCache("copy")
    mine_hashes, mine_rows = stored(mine, 4, seed=3)
    other = FeatureCache("copy", tmp_path / "elsewhere")
    other_hashes, other_rows = stored(other, 6, seed=4)
    assert other.copy_into(mine) == 6
    features, found = mine.get_many([*mine_hashes, *other_hashes])
    assert found.all()
    np.testing.assert_array_equal(features, np.concatenate([mine_rows, other_rows]))
    # Segment files copied over this store's own, as a careless copy would: the process
    # notices they are not the segments it read, and reads them again.
    shutil.copytree(other.store.folder, mine.store.folder, dirs_exist_ok=True)
    features, found = mine.get_many(other_hashes)
    assert found.all()
    np.testing.assert_array_equal(features, other_rows)


def test_a_bulk_read_lets_go_of_its_mapped_pages_and_reads_the_same_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SEGMENT_ROWS", 300)
    monkeypatch.setattr(store_module, "RELEASED_AFTER_ROWS", 100)  # a bulk read here
    rows = np.random.default_rng(1).normal(size=(700, 8)).astype(np.float16)
    keys = [i.to_bytes(32, "big") for i in range(700)]
    store = RowStore(tmp_path / "rows", 8)
    store.append(keys, rows)
    shuffled = np.random.default_rng(2).permutation(700)
    for _ in range(2):  # the second read faults the pages in again from the file
        got, found = store.read([keys[i] for i in shuffled], np.float16)
        assert found.all()
        np.testing.assert_array_equal(got, rows[shuffled])
    few, _ = store.read(keys[:3], np.float32)  # a small read keeps its pages mapped
    np.testing.assert_array_equal(few, rows[:3].astype(np.float32))
