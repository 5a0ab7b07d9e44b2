"""The workspace: atomic writes, stale leftovers, and a disk that fills up."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flower_model.core import workspace
from flower_model.core.errors import DatasetError
from tests.conftest import REPO


@pytest.fixture
def tiny_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of the size the test's parameter names, or skip if this machine cannot mount."""
    folder = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    size = getattr(request, "param", "8m")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'not root'}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_explained_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workspace.HOME_ENV, "/srv/flowers")
    message = workspace.describe_failure(OSError(errno.ENOSPC, "No space left on device"))
    assert "/srv/flowers" in message and "is full" in message and "FLOWER_LENS_HOME" in message
    assert workspace.describe_failure(ValueError("bad")) == "bad"


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(
    tiny_disk: Path,
) -> None:
    target = tiny_disk / "settings" / "file.bin"
    workspace.write_atomic(target, b"old")
    with pytest.raises(OSError) as failure:
        workspace.write_atomic(target, b"x" * (9 * 2**20))  # larger than the whole disk
    assert failure.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


@pytest.mark.parametrize(
    ("tiny_disk", "when"),
    [("1m", "at save"), pytest.param("100k", "at once", marks=pytest.mark.resnet)],
    indirect=["tiny_disk"],
    ids=["at save", "at once"],
)
def test_training_on_a_full_disk_says_so_in_one_line_and_keeps_nothing_half_written(
    tiny_disk: Path, when: str, sample_dir: Path, request: pytest.FixtureRequest, capfd
) -> None:
    from tests.conftest import built_once, run_cli, stand_in_features

    # 1 MB holds the features of the 40 photos but not the model (the head, about 2.3 MB);
    # 100 KB fills up while the features are written.
    args = ("train", "--data", str(sample_dir), "--weights", "none", "--epochs", "2")
    if when == "at save":
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(workspace.HOME_ENV, str(tiny_disk))
            from flower_model.data.dataset import scan_dataset

            stand_in_features(scan_dataset(sample_dir))  # cached: it fails at the save
        result = run_cli(capfd, *args, home=tiny_disk)
    else:
        with built_once(request.getfixturevalue("resnet")):  # extracts until the disk is full
            result = run_cli(capfd, *args, home=tiny_disk)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the disk holding the workspace") and "is full" in lines[-1]
    assert "Traceback" not in result.stderr
    runs = tiny_disk / "runs"
    assert not runs.exists() or not list(runs.iterdir())  # no run, no partial run folder
    assert not list(tiny_disk.rglob("*.tmp"))
    # Every feature that was kept is whole: the cache never holds a truncated entry.
    from flower_model.data.dataset import scan_dataset
    from flower_model.features.cache import FeatureCache

    hashes = [r.sha256 for r in scan_dataset(sample_dir, use_cache=False).records]
    for namespace in (tiny_disk / "features").iterdir():
        cache = FeatureCache(namespace.name, tiny_disk / "features")
        features, found = cache.get_many(hashes)
        assert found.sum() == cache.count() and np.isfinite(features).all()


def test_an_upload_onto_a_full_disk_is_refused_in_one_line(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.data.uploads import add_photos, create_dataset

    monkeypatch.setenv(workspace.HOME_ENV, str(tiny_disk))
    folder = create_dataset("full")
    rng = np.random.default_rng(0)
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (2000, 2000, 3), dtype=np.uint8)).save(buffer, "PNG")
    with pytest.raises(DatasetError, match="could not store big.png: the disk .* is full"):
        add_photos(folder, "rose", [("big.png", buffer.getvalue())])
    assert not list(folder.rglob("*.png")) and not list(folder.rglob("*.tmp"))


def test_facts_remembered_by_several_processes_at_once_are_all_kept(fresh_home: Path) -> None:
    # The server and its worker both remember facts: each write must keep the other's.
    script = (
        "import sys\n"
        "from flower_model.core import workspace\n"
        "for i in range(40):\n"
        "    workspace.remember('facts.json', f'{sys.argv[1]}-{i}', i)\n"
    )
    env = {**os.environ, "FLOWER_LENS_HOME": str(fresh_home)}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, name], cwd=REPO, env=env)
        for name in ("a", "b", "c")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    for name in ("a", "b", "c"):
        assert [workspace.recalled("facts.json", f"{name}-{i}") for i in range(40)] == list(
            range(40)
        )


def test_the_default_workspace_is_beside_the_package_in_the_checkout() -> None:
    # .gitignore keeps workspace/ out of git: the default must be that folder.
    assert workspace.DEFAULT_HOME == REPO / "workspace"


def test_a_cache_that_cannot_be_written_is_logged_once_and_said_until_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = workspace.write_atomic

    def full(path: Path, data: bytes | str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(workspace, "write_atomic", full)
    with caplog.at_level("WARNING", logger="flower_model.core.workspace"):
        assert not workspace.write_cache(tmp_path / "a", "x", "a folder's scan")
        assert not workspace.write_cache(tmp_path / "b", "x", "the runs' index")
    assert "is full" in (workspace.unwritten_caches() or "")
    assert [r.getMessage().split(" not saved")[0] for r in caplog.records] == [
        "Flower Lens: a folder's scan"  # once, not at every page run
    ]
    monkeypatch.setattr(workspace, "write_atomic", real)
    assert workspace.write_cache(tmp_path / "c", "x", "a folder's scan")
    assert workspace.unwritten_caches() is None and (tmp_path / "c").read_text() == "x"
