"""Background jobs: they outlive the page, one per dataset, and report what happened."""

from __future__ import annotations

import threading

import pytest

from flower_model.config import TrainConfig
from flower_model.errors import TrainingCancelled
from flower_model.events import FINE_TUNING_PHASE, TrainEvent, progress_of
from flower_model.jobs import JobBoard, JobConflict


class FakeRun:
    run_id = "run-1"


def blocking_train(release: threading.Event, outcome=None):
    def train(dataset, config, on_event, cancel):
        on_event(TrainEvent("phase", message="training the head"))
        on_event(
            TrainEvent(
                "epoch",
                epoch=1,
                epochs=2,
                loss=1.0,
                accuracy=0.5,
                val_loss=1.2,
                val_accuracy=0.4,
                eta=3.0,
            )
        )
        release.wait(10)
        if cancel.is_set():
            raise TrainingCancelled("stopped before the first epoch completed")
        if outcome is not None:
            raise outcome
        return FakeRun()

    return train


def test_a_second_job_on_the_same_data_is_refused_until_the_first_ends(sample) -> None:
    board, release = JobBoard(), threading.Event()
    job = board.start_training(sample, TrainConfig(), train_fn=blocking_train(release))
    assert board.running_on(sample.fingerprint) is job
    with pytest.raises(JobConflict, match="already running"):
        board.start_training(sample, TrainConfig(), train_fn=blocking_train(release))
    release.set()
    job.thread.join(10)
    assert job.status == "done" and job.run_id == "run-1"
    assert board.running_on(sample.fingerprint) is None
    again = board.start_training(sample, TrainConfig(), train_fn=blocking_train(release))
    again.thread.join(10)
    assert board.latest_training(sample.fingerprint) is again


def test_stop_and_failure_are_reported_not_raised(sample) -> None:
    board, release = JobBoard(), threading.Event()
    job = board.start_training(sample, TrainConfig(), train_fn=blocking_train(release))
    job.stop()
    release.set()
    job.thread.join(10)
    assert job.status == "cancelled" and "stopped" in job.error

    failing = board.start_training(
        sample, TrainConfig(), train_fn=blocking_train(release, RuntimeError("disk full"))
    )
    failing.thread.join(10)
    assert failing.status == "failed" and failing.error == "disk full"
    assert failing.progress().error == "disk full"


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


def test_features_job_fills_the_cache(sample, fresh_home) -> None:
    from flower_model.features import cache_infos

    board = JobBoard()
    job = board.start_features(sample, "none")
    job.thread.join(120)
    assert job.status == "done", job.error
    assert job.events[-1].message == f"features: 0 from cache, {len(sample.records)} computed"
    (info,) = cache_infos()
    assert info.count == len(sample.records) and "no transfer learning" in info.weights_label
