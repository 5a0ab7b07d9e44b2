"""Features on a real Ray cluster started on this machine (a head and a second node, one CPU
each): both nodes work, the features equal the local path's, a worker killed mid-way costs
only its photos, and a training afterwards reads every feature from the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, build_sample, built_once

ray = pytest.importorskip("ray", reason="Ray is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.resnet]

# Small chunks, so that a few dozen photos make several tasks for the two nodes.
CHUNK = 6
WAIT = 300  # seconds: the longest any step here may take


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    return ray_cluster


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Forty generated photos in five classes (their own hashes: no cache holds them)."""
    return build_sample(tmp_path_factory.mktemp("cluster-photos") / "flowers", per_class=8)


def test_extract_on_two_nodes_equals_the_local_path_and_train_reads_it(
    cluster, photos, fresh_home, resnet, monkeypatch
) -> None:
    from flower_model.data.dataset import scan_dataset
    from flower_model.features.extraction import dataset_features

    env = {
        **os.environ,
        "FLOWER_LENS_HOME": str(fresh_home),
        "FLOWER_LENS_CLUSTER_CHUNK": str(CHUNK),
    }
    command = [sys.executable, "-m", "flower_model", "extract", "--data", str(photos)]
    options = ["--weights", "none", "--precision", "float32", "--cluster", cluster.address]
    done = subprocess.run(
        command + options, capture_output=True, text=True, cwd=REPO, env=env, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "40 computed on the cluster at" in done.stdout
    # Both nodes computed some photos: each task says on which node it ran (Ray's runtime
    # context; its state API needs the dashboard, which this cluster does not start).
    assert "40 photo(s) computed on 2 node(s) of the cluster" in done.stderr
    monkeypatch.setenv("FLOWER_LENS_CLUSTER", cluster.address)
    from flower_model.core.cluster import connect

    assert connect().nodes == 2

    # The same arithmetic on this machine, in a workspace of its own, gives the same features.
    dataset = scan_dataset(photos)
    on_cluster = dataset_features(dataset, "none", 42, "float32")
    assert on_cluster.stats.computed == 0  # all read from the cache the cluster filled
    monkeypatch.delenv("FLOWER_LENS_CLUSTER")
    monkeypatch.setenv("FLOWER_LENS_HOME", str(fresh_home.parent / "local-home"))
    with built_once(resnet):
        local = dataset_features(dataset, "none", 42, "float32")
    assert local.stats.computed == 40 and local.cache_key == on_cluster.cache_key
    np.testing.assert_allclose(on_cluster.features, local.features, rtol=2e-3, atol=1e-3)

    # A training afterwards, without the cluster, reads every feature from the cache.
    train = [sys.executable, "-m", "flower_model", "train", "--data", str(photos)]
    settings = ["--weights", "none", "--precision", "float32", "--epochs", "1"]
    trained = subprocess.run(
        train + settings, capture_output=True, text=True, cwd=REPO, env=env, timeout=WAIT
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "features: 40 from cache, 0 computed" in trained.stderr


def _chunk_workers() -> list[int]:
    """Return the process ids of Ray workers running an extraction chunk now."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ray::_extract_chunk" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_worker_killed_mid_way_costs_only_its_photos(
    cluster, photos, fresh_home, monkeypatch
) -> None:
    from flower_model.data.dataset import scan_dataset
    from flower_model.features import distributed
    from flower_model.model.backbone import resolve_weights

    monkeypatch.setenv("FLOWER_LENS_CLUSTER", cluster.address)
    monkeypatch.setattr(distributed, "CHUNK_PHOTOS", CHUNK)
    dataset = scan_dataset(photos)
    seen: list[tuple[int, int]] = []
    outcome: list = []

    def extract() -> None:
        try:
            outcome.append(
                distributed.extract_on_cluster(
                    [dataset.path_of(r) for r in dataset.records],
                    [r.sha256 for r in dataset.records],
                    resolve_weights("none"),
                    precision="float32",
                    progress=lambda done, total: seen.append((done, total)),
                )
            )
        except BaseException as exc:  # reported by the test below
            outcome.append(exc)

    runner = threading.Thread(target=extract)
    runner.start()
    deadline, killed = time.monotonic() + WAIT, None
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        workers = _chunk_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    runner.join(timeout=WAIT)
    assert killed is not None, "no extraction worker was seen running"
    assert not runner.is_alive()
    result = outcome[0]
    assert not isinstance(result, BaseException), result
    # Every photo is in the cache once; progress only went forward, to the end.
    keys = result.cache.store.keys()
    assert len(keys) == len(set(keys)) == len({r.sha256 for r in dataset.records})
    assert result.cache.found([r.sha256 for r in dataset.records]).all()
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (40, 40)
