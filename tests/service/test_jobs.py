"""Background jobs: they outlive the page, one per dataset, and report what happened.

The boards here start their worker without the app's warm-up (TensorFlow loaded, the head's
loop traced): their jobs train nothing, or find every feature cached.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flower_model.core.errors import TrainingCancelled
from flower_model.core.events import FINE_TUNING_PHASE, TrainEvent, progress_of
from flower_model.data.dataset import Dataset
from flower_model.model.config import TrainConfig
from flower_model.service.jobs import JobBoard, JobConflict
from flower_model.service.journal import Asked, Journal, left_behind
from flower_model.service.worker import Worker
from tests.conftest import REPO

RELEASE_ENV = "FLOWER_LENS_TEST_RELEASE"


class FakeRun:
    run_id = "run-1"


def fake_train(dataset, config, on_event, cancel, owner=""):
    """Train nothing, in the worker: report one epoch, note when it ran, then wait for the
    test's release file (or a Stop); the seed says how to end."""
    release = Path(os.environ[RELEASE_ENV])
    started = time.time()
    on_event(TrainEvent("phase", message="training the head"))
    on_event(
        TrainEvent(
            "epoch", epoch=1, epochs=2, loss=1.0, accuracy=0.5, val_loss=1.2, val_accuracy=0.4
        )
    )
    while not release.exists():
        if cancel.is_set():
            raise TrainingCancelled("stopped before the first epoch completed")
        time.sleep(0.02)
    with (release.parent / "spans.txt").open("a") as spans:
        spans.write(f"{dataset.fingerprint} {started} {time.time()}\n")
    if config.seed == 13:
        raise RuntimeError("disk full")
    if config.seed == 9:
        os.kill(os.getpid(), signal.SIGKILL)
    if config.seed == 21:
        time.sleep(600)  # a task that never looks at its cancel token
    return FakeRun()


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    """One job board, with its worker process, for the tests of this module."""
    release = tmp_path_factory.mktemp("jobs") / "release"
    os.environ[RELEASE_ENV] = str(release)  # the worker inherits it when it starts
    board = JobBoard(Worker(warm_up=None))
    board.release = release
    yield board
    board.close()
    del os.environ[RELEASE_ENV]


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline
        time.sleep(0.05)


def test_a_second_job_on_the_same_data_is_refused_until_the_first_ends(board, sample) -> None:
    board.release.unlink(missing_ok=True)
    job = board.start_training(sample, TrainConfig(), train_fn=fake_train)
    assert board.running_on(sample.fingerprint) is job
    with pytest.raises(JobConflict, match="already"):
        board.start_training(sample, TrainConfig(), train_fn=fake_train)
    # The worker's events reach the server while the job runs.
    wait_for(lambda: job.progress().history["loss"] == [1.0])
    assert job.status == "running"
    board.release.touch()
    assert job.wait(30)
    assert job.status == "done" and job.run_id == "run-1"
    assert board.running_on(sample.fingerprint) is None
    again = board.start_training(sample, TrainConfig(), train_fn=fake_train)
    assert again.wait(30)
    assert board.latest(sample.fingerprint) is again


def test_a_training_lines_up_behind_a_features_job_on_its_dataset(
    board, sample, stand_in_home
) -> None:
    board.release.unlink(missing_ok=True)
    features = board.start_features(sample, "none")
    training = board.start_training(sample, TrainConfig(), train_fn=fake_train)  # not refused
    assert board.running_on(sample.fingerprint) is training
    assert board.running_on(sample.fingerprint, kind="features") is features
    with pytest.raises(JobConflict, match="training job"):
        board.start_training(sample, TrainConfig(), train_fn=fake_train)
    if features.status == "running":  # (unless it ended already)
        wait_for(lambda: "features, which are being computed" in training.progress().phase)
    wait_for(lambda: training.status == "running")
    assert features.status == "done"  # one after the other: the features were ready
    board.release.touch()
    assert training.wait(30) and training.status == "done"


def other_dataset(sample) -> Dataset:
    return dataclasses.replace(sample, fingerprint="another-dataset")


def test_jobs_on_two_datasets_wait_their_turn(board, sample) -> None:
    board.release.unlink(missing_ok=True)
    (board.release.parent / "spans.txt").unlink(missing_ok=True)
    first = board.start_training(sample, TrainConfig(), train_fn=fake_train)
    second = board.start_training(other_dataset(sample), TrainConfig(), train_fn=fake_train)
    wait_for(lambda: first.status == "running")
    assert second.status == "waiting"
    assert second.progress().phase == "waiting for 1 job(s) ahead to finish"
    board.release.touch()
    assert first.wait(30) and second.wait(30)
    assert (first.status, second.status) == ("done", "done")
    spans = sorted(
        tuple(map(float, line.split()[1:]))
        for line in (board.release.parent / "spans.txt").read_text().splitlines()
    )
    assert spans[0][1] <= spans[1][0]  # one after the other, never at once


def test_stop_and_failure_are_reported_not_raised(board, sample) -> None:
    board.release.unlink(missing_ok=True)
    job = board.start_training(sample, TrainConfig(), train_fn=fake_train)
    waiting = board.start_training(other_dataset(sample), TrainConfig(), train_fn=fake_train)
    wait_for(lambda: job.status == "running")
    waiting.stop()
    assert waiting.status == "cancelled" and waiting.error == "stopped before it started"
    asked = time.time()
    job.stop()
    assert job.wait(30)
    assert job.status == "cancelled" and "stopped" in job.error
    assert time.time() - asked < 1.0
    board.release.touch()
    failing = board.start_training(sample, TrainConfig(seed=13), train_fn=fake_train)
    assert failing.wait(30)
    assert failing.status == "failed" and failing.error == "disk full"
    assert failing.progress().error == "disk full"


def test_a_job_deaf_to_stop_is_ended_by_restarting_the_worker(
    board, sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.service import worker

    monkeypatch.setattr(worker, "STOP_GRACE_SECONDS", 1.0)
    board.release.touch()
    deaf = board.start_training(sample, TrainConfig(seed=21), train_fn=fake_train)
    wait_for(lambda: deaf.progress().history["loss"] == [1.0])
    deaf.stop()
    assert deaf.wait(30)
    assert deaf.status == "cancelled" and "worker process was restarted" in deaf.error
    after = board.start_training(sample, TrainConfig(), train_fn=fake_train)
    assert after.wait(60) and after.status == "done"


def test_the_board_keeps_only_the_latest_ended_jobs(
    board, sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.service import jobs

    monkeypatch.setattr(jobs, "KEPT_JOBS", 2)
    board.release.touch()
    started = []
    for _ in range(4):
        started.append(board.start_training(sample, TrainConfig(), train_fn=fake_train))
        assert started[-1].wait(30)
    assert [job.job_id for job in board.jobs()] == [started[-1].job_id, started[-2].job_id]


def test_a_worker_that_dies_interrupts_its_job_and_the_next_job_gets_a_new_one(
    board, sample
) -> None:
    board.release.touch()
    killed = board.start_training(sample, TrainConfig(seed=9), train_fn=fake_train)
    assert killed.wait(60)
    assert killed.status == "interrupted" and "worker process stopped unexpectedly" in killed.error
    assert killed.asked.settings["config"]["seed"] == 9  # what starting it again needs
    after = board.start_training(sample, TrainConfig(), train_fn=fake_train)
    assert after.wait(60) and after.status == "done"


def test_a_job_left_unfinished_by_a_server_is_shown_interrupted_and_starts_again(
    board, sample, tmp_path: Path
) -> None:
    # A server killed while it trained: its journal stays, its lock is freed with its process.
    asked = Asked(
        "training",
        str(sample.root),
        sample.fingerprint,
        time.time() - 60,
        {"config": TrainConfig(seed=3, epochs=7).to_json(), "weights": "none"},
    )
    code = (
        "import os, sys, json, pathlib\n"
        "from flower_model.service.journal import Asked, Journal\n"
        "journal = Journal(pathlib.Path(sys.argv[1]))\n"
        "journal.add('job-4', Asked.from_json(json.loads(sys.argv[2])))\n"
        "os._exit(9)\n"
    )
    folder = tmp_path / "journal"
    command = [sys.executable, "-c", code, str(folder), json.dumps(asked.to_json())]
    assert subprocess.run(command, cwd=REPO, timeout=60).returncode == 9
    restarted = JobBoard(Worker(warm_up=None), Journal(folder))
    try:
        job = restarted.latest(sample.fingerprint)
        assert job is not None and job.status == "interrupted" and not job.running
        assert "server restart" in job.error and job.asked == asked
        again = restarted.start_again(job, sample, train_fn=fake_train)
        assert again.asked.settings["config"] == asked.settings["config"]
        board.release.touch()  # the worker of this board inherits the release file's name
        assert again.wait(60) and again.status == "done"
        assert restarted.latest(sample.fingerprint) is again
    finally:
        restarted.close()
    assert left_behind(folder) == []  # found once, and a clean end leaves no journal


def test_progress_follows_the_events() -> None:
    events = [
        TrainEvent("phase", message="extracting features"),
        TrainEvent("extract", done=50, total=200),
    ]
    progress = progress_of(events, "running")
    assert progress.phase == "extracting features 50/200" and progress.fraction == 0.25
    events += [
        TrainEvent("phase", message="training the head"),
        TrainEvent("batch", epoch=2, epochs=4, batch=3, batches=4, loss=0.9, eta=5.0),
        TrainEvent(
            "epoch",
            epoch=1,
            epochs=4,
            loss=1.0,
            accuracy=0.5,
            val_loss=1.1,
            val_accuracy=0.45,
            eta=6.0,
        ),
    ]
    progress = progress_of(events, "running")
    assert progress.history == {
        "loss": [1.0],
        "accuracy": [0.5],
        "val_loss": [1.1],
        "val_accuracy": [0.45],
    }
    assert progress.fraction == 0.25 and progress.eta == 6.0
    assert progress_of(events, "done").fraction == 1.0
    assert progress.fine_tuned_after is None
    events.append(TrainEvent("phase", message=FINE_TUNING_PHASE))
    assert progress_of(events, "running").fine_tuned_after == 1


@pytest.mark.resnet
def test_features_job_fills_the_cache(sample, known_weights_home) -> None:
    from flower_model.features.cache import cache_infos

    board = JobBoard(Worker(warm_up=None))
    job = board.start_features(sample, "none")
    job.wait(180)
    board.close()
    assert job.status == "done", job.error
    assert job.events[-1].message == f"features: 0 from cache, {len(sample.records)} computed"
    (info,) = cache_infos()
    assert info.count == len(sample.records) and "no transfer learning" in info.weights_label
