"""The model store: only completely saved runs exist; ids, prefixes and 'latest'; metadata
that is not a run's hides nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_model.backbone import WeightsChoice
from flower_model.config import TrainConfig
from flower_model.data import Split
from flower_model.errors import RunError
from flower_model.evaluate import evaluate_predictions
from flower_model.features import ExtractionStats
from flower_model.metadata import DatasetInfo, RunMetadata, WeightsInfo
from flower_model.runs import METADATA_FILE, MODEL_FILE, RunWriter, get_run, list_runs


def metadata(run_id: str, accuracy: float = 0.5) -> RunMetadata:
    """Return the metadata of a two-class run whose held-out accuracy is `accuracy` (of 10)."""
    right = round(accuracy * 10)
    labels = [0] * 10
    probabilities = [[0.9, 0.1]] * right + [[0.2, 0.8]] * (10 - right)
    paths = [f"a/{i}.jpg" for i in range(10)]
    return RunMetadata(
        run_id=run_id,
        created="2026-01-01T00:00:00+0000",
        seconds=1.5,
        class_names=("a", "b"),
        input_size=(224, 224, 3),
        preprocessing="resnet50",
        weights=WeightsInfo.of(WeightsChoice("none"), "abcd"),
        config=TrainConfig(weights="none", learning_rate=1e-4),
        dataset=DatasetInfo("/data", "f00d", 20, {"a": 10, "b": 10}, 0),
        split=Split(42, 0.5, ("b/0.jpg",), tuple(paths)),
        features=ExtractionStats(20, 0, 20, 1.0, "float32"),
        history={"loss": [1.0], "accuracy": [0.5], "val_loss": [1.1], "val_accuracy": [0.4]},
        epochs_completed=1,
        best_epoch=1,
        stopped="all epochs",
        evaluation=evaluate_predictions(labels, probabilities, ("a", "b"), paths),
        versions={"python": "3.11"},
    )


def fake_run(root: Path, run_id: str, accuracy: float = 0.5) -> Path:
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(b"model")
    (folder / METADATA_FILE).write_text(json.dumps(metadata(run_id, accuracy).to_json()))
    return folder


def test_metadata_survives_json_and_old_runs_still_load() -> None:
    meta = metadata("20260101-000000-aaaa", accuracy=0.7)
    assert RunMetadata.from_json(json.loads(json.dumps(meta.to_json()))) == meta
    # A run saved before precision and standardisation were recorded.
    old = meta.to_json()
    del old["features"]["precision"], old["config"]["precision"], old["standardised_features"]
    loaded = RunMetadata.from_json(old)
    assert loaded.features.precision == "float32" and loaded.config.precision == "auto"
    assert loaded.standardised_features is False and loaded.accuracy == pytest.approx(0.7)


@pytest.mark.parametrize(
    "broken",
    [[], {}, {"run_id": "x"}, {"run_id": "x", "class_names": ["a"], "weights": []}, "text"],
)
def test_what_is_not_a_runs_metadata_is_refused(broken) -> None:
    with pytest.raises(ValueError, match="metadata"):
        RunMetadata.from_json(broken)


def test_runs_are_listed_newest_first_and_found_by_prefix(tmp_path: Path) -> None:
    fake_run(tmp_path, "20260101-000000-aaaa")
    fake_run(tmp_path, "20260102-000000-bbbb", accuracy=0.9)
    assert [r.run_id for r in list_runs(tmp_path)] == [
        "20260102-000000-bbbb",
        "20260101-000000-aaaa",
    ]
    assert get_run("latest", tmp_path).accuracy == pytest.approx(0.9)
    assert get_run("20260101", tmp_path).run_id == "20260101-000000-aaaa"
    with pytest.raises(RunError, match="2 runs match"):
        get_run("2026", tmp_path)
    with pytest.raises(RunError, match="no run matches 'zzz'"):
        get_run("zzz", tmp_path)


def test_no_runs_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="train one first"):
        get_run("latest", tmp_path)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"run_id": "x"}', ""])
def test_unfinished_and_broken_runs_are_never_listed(tmp_path: Path, content: str) -> None:
    good = fake_run(tmp_path, "20260101-000000-aaaa")
    writer = RunWriter(tmp_path)
    writer.log_event({"kind": "start"})
    no_model = fake_run(tmp_path, "20260103-000000-cccc")
    (no_model / MODEL_FILE).unlink()
    broken = fake_run(tmp_path, "20260104-000000-dddd")
    (broken / METADATA_FILE).write_text(content)
    assert [r.path for r in list_runs(tmp_path)] == [good]
    writer.discard()
    assert not writer.partial.exists()
