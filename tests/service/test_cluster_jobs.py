"""The cluster's job board, on a real Ray cluster on 127.0.0.1: every replica sees the same
jobs and their events, Stop works from any of them, one job per dataset across replicas, and a
job goes on when the replica that started it is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import TrainEvent
from flower_model.model.config import TrainConfig
from tests.conftest import REPO

pytestmark = pytest.mark.slow

RELEASE_ENV = "FLOWER_LENS_TEST_RELEASE"


class FakeRun:
    run_id = "cluster-run"


def fake_train(dataset, config, on_event, cancel, owner=""):
    """Train nothing, on the cluster: report an epoch, then wait for the release file (its
    path in the settings passed with the job) or a Stop."""
    release = Path(os.environ[RELEASE_ENV])
    on_event(TrainEvent("phase", message="training the head"))
    on_event(TrainEvent("epoch", epoch=1, epochs=2, loss=1.0, accuracy=0.5))
    deadline = time.time() + 120
    while not release.exists() and time.time() < deadline:
        if cancel.is_set():
            raise TrainingCancelled("stopped before the first epoch completed")
        time.sleep(0.05)
    return FakeRun()


@pytest.fixture
def boards(ray_cluster, tmp_path, monkeypatch):
    """Two replicas' handles on the cluster's board (one process here: the board is the
    cluster's, found by name, whoever asks)."""
    from flower_model.service.cluster_jobs import ClusterJobBoard, end_board

    monkeypatch.setenv("FLOWER_LENS_CLUSTER", ray_cluster.address)
    monkeypatch.setenv(RELEASE_ENV, str(tmp_path / "release"))
    yield ClusterJobBoard(), ClusterJobBoard()
    end_board()


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_one_board_for_every_replica_with_its_events_and_stop(boards, sample, tmp_path) -> None:
    from flower_model.service.jobs import JobConflict

    a, b = boards
    config = TrainConfig(weights="none", epochs=2)
    job = a.start_training(sample, config, train_fn=fake_train)
    seen = b.running_on(sample.fingerprint)
    assert seen is not None and seen.job_id == job.job_id
    wait_for(lambda: b.running_on(sample.fingerprint).progress().history.get("loss") == [1.0])
    with pytest.raises(JobConflict, match="already"):
        b.start_training(sample, config, train_fn=fake_train)
    b.running_on(sample.fingerprint).stop()
    assert job.wait(timeout=120)
    assert job.status == "cancelled" and "stopped" in job.error
    # Ended, the dataset is free again; the release lets this one finish.
    (tmp_path / "release").touch()
    second = b.start_training(sample, config, train_fn=fake_train)
    assert second.wait(timeout=120) and second.status == "done"
    assert a.latest(sample.fingerprint).run_id == "cluster-run"


REPLICA = """
import os, sys, time
from flower_model.data.dataset import scan_dataset
from flower_model.model.config import TrainConfig
from flower_model.service.cluster_jobs import ClusterJobBoard
from tests.service.test_cluster_jobs import fake_train
board = ClusterJobBoard()
job = board.start_training(scan_dataset(sys.argv[1]), TrainConfig(weights="none", epochs=2),
                           train_fn=fake_train)
print(job.job_id, flush=True)
time.sleep(600)
"""


def test_a_job_goes_on_when_its_replica_is_killed(boards, sample, tmp_path) -> None:
    a, _ = boards
    replica = subprocess.Popen(
        [sys.executable, "-c", REPLICA, str(sample.root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
    )
    try:
        assert replica.stdout is not None
        job_id = replica.stdout.readline().strip()
        assert job_id
        wait_for(lambda: a.running_on(sample.fingerprint) is not None)
    finally:
        replica.kill()
        replica.wait(timeout=30)
    (tmp_path / "release").touch()
    job = a.running_on(sample.fingerprint) or a.latest(sample.fingerprint)
    assert job is not None and job.job_id == job_id
    assert job.wait(timeout=120)
    assert job.status == "done" and job.run_id == "cluster-run"
