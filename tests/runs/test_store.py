"""The model store: only completely saved runs exist; ids, prefixes and 'latest'; metadata
that is not a run's hides nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_model.core.errors import RunError
from flower_model.data.dataset import Split
from flower_model.features.cache import ExtractionStats
from flower_model.metrics.evaluate import evaluate_predictions
from flower_model.model.backbone import WeightsChoice
from flower_model.model.config import TrainConfig
from flower_model.runs.metadata import DatasetInfo, RunMetadata, WeightsInfo
from flower_model.runs.store import (
    METADATA_FILE,
    MODEL_FILE,
    RunInfo,
    RunWriter,
    get_run,
    list_runs,
)
from tests.conftest import copy_home


def created_of(run_id: str) -> str:
    """Return the time a run id (YYYYMMDD-HHMMSS-xxxx, local time) names, as a run records it;
    a fixed one for an id that names none."""
    from datetime import datetime

    try:
        named = datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").astimezone()
    except ValueError:
        return "2026-01-01T00:00:00+0000"
    return named.strftime("%Y-%m-%dT%H:%M:%S%z")


def metadata(run_id: str, accuracy: float = 0.5) -> RunMetadata:
    """Return the metadata of a two-class run whose held-out accuracy is `accuracy` (of 10)."""
    right = round(accuracy * 10)
    labels = [0] * 10
    probabilities = [[0.9, 0.1]] * right + [[0.2, 0.8]] * (10 - right)
    paths = [f"a/{i}.jpg" for i in range(10)]
    return RunMetadata(
        run_id=run_id,
        created=created_of(run_id),
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


def fake_model(path: Path, classes: int) -> None:
    """Write a `.keras` archive whose config is shaped like the classifier's (no weights)."""
    import zipfile

    layers = [
        {"class_name": "Functional", "config": {"name": "resnet50"}},
        {"class_name": "Dense", "config": {"name": "probabilities", "units": classes}},
    ]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"config": {"layers": layers}}))


def fake_run(root: Path, run_id: str, accuracy: float = 0.5) -> Path:
    folder = root / run_id
    folder.mkdir(parents=True)
    fake_model(folder / MODEL_FILE, classes=2)
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


def save_run(sample, root: Path) -> Path:
    """Train a run on the sample with the training code, save it under `root`; return it."""
    from flower_model.workflows.train import train

    train(sample, TrainConfig(epochs=1, batch_size=8, weights="none", patience=0), runs_root=root)
    (folder,) = root.iterdir()
    return folder


@pytest.fixture(scope="module")
def saved_run(sample, stand_in_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run, saved by the training code (on the sample's stand-in features: a run that
    is listed and damaged here, never loaded under ResNet50)."""
    home = tmp_path_factory.mktemp("saved-run") / "home"
    with pytest.MonkeyPatch.context() as patch:
        copy_home(stand_in_template, home, patch)
        return save_run(sample, tmp_path_factory.mktemp("runs"))


def tampered(saved: Path, root: Path, run_id: str) -> Path:
    """Return a copy of a saved run under another id, ready to be damaged."""
    import shutil

    copy = root / run_id
    shutil.copytree(saved, copy)
    meta = json.loads((copy / METADATA_FILE).read_text())
    (copy / METADATA_FILE).write_text(json.dumps({**meta, "run_id": run_id}))
    return copy


def keras_model(path: Path, lambda_layer: bool = False) -> None:
    import keras

    image = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2)(image) if lambda_layer else image
    keras.Model(image, keras.layers.Dense(5, name="probabilities")(x)).save(path)


def test_tampered_runs_are_listed_as_broken_with_the_reason(
    saved_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from flower_model.runs import store as runs_module
    from flower_model.runs.store import load_model, scan_runs

    tampered(saved_run, tmp_path, "20990101-000000-good")
    damage = {
        "20990102-000000-garb": lambda run: (run / MODEL_FILE).write_bytes(b"garbage"),
        "20990103-000000-othr": lambda run: keras_model(run / MODEL_FILE),
        "20990104-000000-lamb": lambda run: keras_model(run / MODEL_FILE, lambda_layer=True),
        "20990105-000000-list": lambda run: (run / METADATA_FILE).write_text("[]"),
        "20990106-000000-trun": lambda run: (run / METADATA_FILE).write_text('{"run_id": "x", '),
        "20990107-000000-keys": lambda run: (run / METADATA_FILE).write_text('{"run_id": "x"}'),
        "20990108-000000-nomd": lambda run: (run / METADATA_FILE).unlink(),
    }
    for run_id, spoil in damage.items():
        spoil(tampered(saved_run, tmp_path, run_id))
    runs, broken = scan_runs(tmp_path)
    assert [r.run_id for r in runs] == ["20990101-000000-good"]
    reasons = {b.run_id[-4:]: b.reason for b in broken}
    assert reasons == {
        "garb": "model.keras is not a Keras model file",
        "othr": "model.keras is not a Flower Lens head of 5 classes",
        "lamb": "model.keras holds a Lambda layer (Python code): refused",
        "list": "metadata.json: run metadata must be a JSON object, not list",
        "trun": "metadata.json: not valid JSON (cut short?)",
        "keys": reasons["keys"],
        "nomd": "no readable metadata.json",
    }
    assert reasons["keys"].startswith("metadata.json: not the metadata of a Flower Lens run")
    # Never the default: 'latest' is the newest usable run; a broken one named says why.
    assert get_run("latest", tmp_path).run_id == "20990101-000000-good"
    with pytest.raises(RunError, match="20990104-000000-lamb is broken: .*Lambda"):
        get_run("20990104", tmp_path)
    # A whole id reads that folder alone, not every run's metadata, and says why it is broken.
    monkeypatch.setattr(runs_module, "scan_runs", lambda root: pytest.fail("scanned"))
    assert get_run("20990101-000000-good", tmp_path).accuracy == runs[0].accuracy
    with pytest.raises(RunError, match="20990106-000000-trun is broken: .*cut short"):
        get_run("20990106-000000-trun", tmp_path)
    monkeypatch.undo()
    with pytest.raises(RunError, match="no run matches '../runs'"):
        get_run("../runs", tmp_path)
    # Loading refuses code even where the listing was bypassed.
    lamb = tmp_path / "20990104-000000-lamb"
    with pytest.raises(RunError, match="cannot load the model"):
        load_model(RunInfo.of("x", lamb, metadata("x")))


def test_the_command_line_and_the_pages_name_broken_runs(
    saved_run: Path, fresh_home: Path, capfd
) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO, run_cli

    def cli(*args: str, home: Path):
        return run_cli(capfd, *args, home=home)

    runs_root = fresh_home / "runs"
    runs_root.mkdir(parents=True)
    tampered(saved_run, runs_root, "20990101-000000-good")
    (tampered(saved_run, runs_root, "20990102-000000-garb") / MODEL_FILE).write_bytes(b"x")
    text = cli("runs", home=fresh_home)
    assert text.returncode == 0
    assert "20990102-000000-garb     broken  model.keras is not a Keras model file" in text.stdout
    listed = json.loads(cli("runs", "--json", home=fresh_home).stdout)
    assert listed[1] == {
        "run_id": "20990102-000000-garb",
        "broken": "model.keras is not a Keras model file",
    }
    predict = cli("predict", "--run", "20990102", str(saved_run), home=fresh_home)
    assert predict.returncode == 1 and "is broken" in predict.stderr
    assert len(predict.stderr.strip().splitlines()) == 1
    pages = {}
    for page in ("pages/evaluate.py", "pages/classify.py", "pages/home.py"):
        app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        app.run()
        app.switch_page(page)
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        pages[page] = app
    evaluate = pages["pages/evaluate.py"]
    (expander,) = [e for e in evaluate.get("expander") if "could not be read" in e.label]
    assert expander.label == "1 run folder(s) could not be read"
    assert "model.keras is not a Keras model file" in expander.markdown[0].value
    assert evaluate.selectbox[0].value == "20990101-000000-good"
    assert pages["pages/classify.py"].selectbox[0].value == "20990101-000000-good"
    home_captions = [c.value for c in pages["pages/home.py"].caption]
    assert "1 run folder(s) could not be read: see Evaluate." in home_captions


def test_a_killed_training_is_cleaned_up_at_the_next_start(
    sample_dir: Path, stand_in_home: Path
) -> None:
    fresh_home = stand_in_home  # no runs; the sample's features cached, so it trains at once
    import os
    import signal
    import subprocess
    import sys
    import time

    from flower_model.core.workspace import remove_stale_temporaries
    from flower_model.runs.store import remove_abandoned
    from tests.conftest import REPO

    env = {**os.environ, "FLOWER_LENS_HOME": str(fresh_home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["--data", str(sample_dir), "--weights", "none", "--epochs", "500", "--patience", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "flower_model", "train", *args, "--batch-size", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs_root = fresh_home / "runs"
    deadline = time.time() + 180
    while (
        not list(runs_root.glob(".partial-*/events.jsonl"))
        or '"epoch"' not in next(runs_root.glob(".partial-*/events.jsonl")).read_text()
    ):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.5)
    (partial,) = runs_root.glob(".partial-*")
    # A training alive is left alone.
    assert remove_abandoned(runs_root) == [] and partial.is_dir()
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    # A write that the kill cut short, and one in progress right now.
    features = fresh_home / "features"
    old = features / "ab" / ".abcd.npy.x1.tmp"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    recent = features / "ab" / ".abce.npy.x2.tmp"
    recent.write_bytes(b"half")
    assert list_runs(runs_root) == []  # never listed
    # The next start (a server's first page, or the next training) removes what was left.
    assert remove_abandoned(runs_root) == [partial] and not partial.exists()
    assert remove_stale_temporaries(fresh_home) == 1 and not old.exists() and recent.exists()


def test_a_partial_folder_from_before_owners_were_recorded_goes_after_an_hour(
    tmp_path: Path,
) -> None:
    import os
    import time

    from flower_model.runs.store import remove_abandoned

    fresh, stale = tmp_path / ".partial-fresh", tmp_path / ".partial-stale"
    fresh.mkdir()
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert remove_abandoned(tmp_path) == [stale] and fresh.is_dir()


def _partial_file(runs_root: Path, name: str) -> bool:
    return any(runs_root.glob(f".partial-*/{name}"))


@pytest.mark.parametrize(
    "moment", [pytest.param("extraction", marks=pytest.mark.resnet), "fit", "save"]
)
def test_a_training_killed_at_any_moment_leaves_nothing_listed_or_wrong(
    moment: str, tmp_path: Path, fresh_home: Path, request: pytest.FixtureRequest, capfd
) -> None:
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    from flower_model.data.synthetic import write_photos
    from flower_model.runs.store import remove_abandoned
    from tests.conftest import REPO

    data = tmp_path / "data"
    write_photos(data, 150, seed=3, size=(160, 120))
    if moment == "extraction":  # no features: the weights known, not measured again
        from tests.conftest import know_the_weights

        know_the_weights(request.getfixturevalue("warm_template"), fresh_home)
    else:  # then the features are cached already: no ResNet50 to build
        from flower_model.data.dataset import scan_dataset
        from tests.conftest import stand_in_features

        stand_in_features(scan_dataset(data))
    env = {**os.environ, "FLOWER_LENS_HOME": str(fresh_home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["--data", str(data), "--weights", "none", "--patience", "0", "--batch-size", "8"]
    runs_root, features = fresh_home / "runs", fresh_home / "features"
    reached = {
        "extraction": lambda: any(key.stat().st_size for key in features.rglob("*.key")),
        "fit": lambda: (
            _partial_file(runs_root, "events.jsonl")
            and '"epoch"' in next(runs_root.glob(".partial-*/events.jsonl")).read_text()
        ),
        "save": lambda: _partial_file(runs_root, "*.keras*") or _partial_file(runs_root, ".*tmp"),
    }[moment]
    epochs = "3" if moment == "save" else "500"
    process = subprocess.Popen(
        [sys.executable, "-m", "flower_model", "train", *args, "--epochs", epochs],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not reached():
        assert process.poll() is None, f"the training ended before the {moment}"
        assert time.time() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert list_runs(runs_root) == []  # nothing half-saved is ever listed
    from flower_model.data.dataset import scan_dataset
    from flower_model.features.cache import FeatureCache

    hashes = [r.sha256 for r in scan_dataset(data).records]
    for namespace in features.iterdir():  # every cached feature kept is whole
        cache = FeatureCache(namespace.name, features)
        kept, found = cache.get_many(hashes)
        assert found.sum() == cache.count() >= 1 and np.all(np.isfinite(kept))
    remove_abandoned(runs_root)
    assert not list(runs_root.glob(".partial-*"))
    # The next training (in this process) uses what the killed one cached, and its run loads.
    from tests.conftest import built_once, run_cli

    with contextlib.ExitStack() as stack:
        if moment == "extraction":  # the rest of the photos: the session's ResNet50 extracts
            stack.enter_context(built_once(request.getfixturevalue("resnet")))
        done = run_cli(capfd, "train", *args, "--epochs", "2", home=fresh_home)
    assert done.returncode == 0, done.stderr
    (run,) = list_runs(runs_root)
    assert run.metadata.features.cached >= 1


def test_a_head_is_loaded_only_under_the_resnet50_it_was_trained_on(
    sample, warm_home: Path, resnet, tmp_path: Path
) -> None:
    from flower_model.runs.store import load_model, scan_runs
    from tests.conftest import built_once

    saved_run = save_run(sample, tmp_path / "trained")  # on ResNet50's own features
    root = tmp_path / "runs"  # the runs looked at below, apart from the workspace
    good = tampered(saved_run, root, "20990101-000000-good")
    assert json.loads((good / METADATA_FILE).read_text())["head_only"]
    with built_once(resnet):  # ResNet50 of the run's weights (built once per session)
        assert load_model(get_run("20990101", root)).get_layer("resnet50") is not None
    other = tampered(saved_run, root, "20990102-000000-othr")
    meta = json.loads((other / METADATA_FILE).read_text())
    meta["weights"]["identity"] = "0123456789abcdef"
    (other / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(RunError, match="trained on ResNet50 weights .* this machine does not"):
        load_model(get_run("20990102", root))
    # A run that says it saved its head alone, holding a whole classifier, is broken.
    whole = tampered(saved_run, root, "20990103-000000-whol")
    fake_model(whole / MODEL_FILE, classes=5)
    reasons = {b.run_id[-4:]: b.reason for b in scan_runs(root)[1]}
    assert reasons == {"whol": "model.keras is not a Flower Lens head of 5 classes"}


def test_a_run_is_deleted_by_whoever_trained_it_or_the_host_alone(tmp_path: Path) -> None:
    from dataclasses import replace

    from flower_model.runs.store import delete_run

    hers = fake_run(tmp_path, "20260101-000000-aaaa")
    owned = replace(metadata(hers.name), owner="account:ana@example.org")
    (hers / METADATA_FILE).write_text(json.dumps(owned.to_json()))
    cli = fake_run(tmp_path, "20260101-000000-bbbb")  # the command line's: no owner
    assert get_run(hers.name, tmp_path).owner == "account:ana@example.org"
    for who, run in (("session:ben", hers), ("session:ben", cli)):
        with pytest.raises(RunError, match="only whoever trained run"):
            delete_run(run.name, owner=who, root=tmp_path)
    for bad in ("../x", ".index.json", "nothing"):
        with pytest.raises(RunError, match="no run is named"):
            delete_run(bad, root=tmp_path)
    delete_run(hers.name, owner="account:ana@example.org", root=tmp_path)
    delete_run(cli.name, root=tmp_path)  # the host
    assert list_runs(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if p.name != ".index.json"]  # nothing half gone
