"""Exports give the app's probabilities through their own runtimes, and fail cleanly.

Each format is exported once per module (slow: 10-60 s each) and then checked by every test.
The run's head is loaded under the session's ResNet50 of its weights (`built_once`) rather
than a ResNet50 built anew for every export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flower_model.core.errors import FlowerLensError
from flower_model.data.images import load_rgb
from flower_model.export.parity import PARITY_TOLERANCE as TOLERANCE
from tests.conftest import SHARED_SAMPLE, built_once, copy_home

pytestmark = [pytest.mark.slow, pytest.mark.resnet]
FLOAT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")


@pytest.fixture(scope="module")
def home(sample, warm_template, tmp_path_factory):
    """A workspace with one trained run (random weights: no ImageNet file here)."""
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    folder = tmp_path_factory.mktemp("export") / "home"
    with pytest.MonkeyPatch.context() as patch:
        copy_home(warm_template, folder, patch)  # the sample's features cached
        train(sample, TrainConfig(epochs=3, batch_size=8, weights="none", patience=0))
        yield folder


@pytest.fixture(autouse=True)
def resnet_built_once(resnet):
    """Every run loaded by a test gets the session's ResNet50 of its weights."""
    with built_once(resnet):
        yield


@pytest.fixture
def run(home, monkeypatch):
    from flower_model.runs.store import get_run

    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    return get_run()


@pytest.fixture(scope="module")
def classifier(home, resnet):
    from flower_model.inference.predict import Classifier

    with pytest.MonkeyPatch.context() as patch, built_once(resnet):
        patch.setenv("FLOWER_LENS_HOME", str(home))
        return Classifier.load()


# Photos of each class every export is compared with the app on (each format runs them all
# through its own runtime).
PHOTOS_PER_CLASS = 4


@pytest.fixture(scope="module")
def photos(sample) -> list[Path]:
    """The shared sample's photos, PHOTOS_PER_CLASS of each class, else as many of the
    generated sample's."""
    if (SHARED_SAMPLE / "flowers").is_dir():
        found = []
        for folder in sorted((SHARED_SAMPLE / "flowers").iterdir()):
            found += sorted(folder.glob("*.jpg"))[:PHOTOS_PER_CLASS]
        return found
    return [
        sample.path_of(r)
        for name in sample.class_names
        for r in [r for r in sample.records if r.path.startswith(f"{name}/")][:PHOTOS_PER_CLASS]
    ]


@pytest.fixture(scope="module")
def exports(home, tmp_path_factory):
    """Each format exported once, on first use: {format: ExportResult}."""
    from flower_model.export.exporter import export_run
    from flower_model.runs.store import get_run

    folder = tmp_path_factory.mktemp("exports")
    done: dict = {}

    def get(fmt: str):
        if fmt not in done:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("FLOWER_LENS_HOME", str(home))
                patch.setattr("flower_model.export.formats.CALIBRATION_PHOTOS", 10)
                done[fmt] = export_run(get_run(), fmt, folder / fmt)
        return done[fmt]

    return get


@pytest.fixture(scope="module")
def keras_zip(home, tmp_path_factory):
    """The run exported once as a Keras .zip, alone in its folder, on first use."""
    from flower_model.export.exporter import export_run
    from flower_model.runs.store import get_run

    folder = tmp_path_factory.mktemp("zip")
    done: list = []

    def get():
        if not done:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("FLOWER_LENS_HOME", str(home))
                done.append(export_run(get_run(), "keras", folder / "flowers.zip"))
        return done[0]

    return get


def _app(classifier, photos) -> np.ndarray:
    return classifier.probabilities(np.stack([load_rgb(p, size=224) for p in photos]))


@pytest.fixture(scope="module")
def app_probabilities(classifier, photos) -> np.ndarray:
    """The app's probabilities of `photos` (computed once: every export is compared to them)."""
    return _app(classifier, photos)


def _through_runtime(result, photos) -> np.ndarray:
    """Probabilities from the exported files alone, through the format's own runtime."""
    from flower_model.export.exporter import load_predictor

    predictor = load_predictor(result.path)
    return np.asarray(predictor.load_model()(np.stack([load_rgb(p, size=224) for p in photos])))


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_float_export_gives_the_apps_probabilities(
    fmt, exports, classifier, photos, app_probabilities
) -> None:
    result = exports(fmt)
    exported, app = _through_runtime(result, photos), app_probabilities
    assert exported.shape == app.shape == (len(photos), 5)
    assert np.abs(exported - app).max() <= TOLERANCE
    assert (exported.argmax(1) == app.argmax(1)).all()
    assert result.parity.pixels_identical  # predict.py decoded the app's pixels
    folder = result.path
    names = {"labels.txt", "model_card.md", "predict.py", "export.json"}
    assert names <= {p.name for p in folder.iterdir()}
    assert (folder / "labels.txt").read_text().split() == list(classifier.class_names)
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["format"] == fmt and manifest["input_dtype"] == "uint8"
    assert manifest["input_shape"] == [None, 224, 224, 3]
    assert (folder / manifest["model_file"]).exists()


def test_the_runtimes_are_the_formats_own(exports) -> None:
    """What each export holds is what its runtime reads (not a Keras file renamed)."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    onnx.checker.check_model(str(exports("onnx").path / "model.onnx"))
    interpreter = Interpreter(str(exports("tflite").path / "model.tflite"))
    given = interpreter.get_input_details()[0]
    assert given["dtype"] == np.uint8 and list(given["shape"][1:]) == [224, 224, 3]
    assert (exports("savedmodel").path / "saved_model" / "saved_model.pb").is_file()
    assert zipfile.is_zipfile(exports("keras").path / "model.keras")


def test_savedmodel_stores_each_weight_once(exports) -> None:
    """Keras' own model.export stores every variable twice (keras-team/keras#23553)."""
    result = exports("savedmodel")
    keras_bytes = exports("keras").model_bytes
    assert result.model_bytes < 1.15 * keras_bytes


def test_savedmodel_from_image_bytes_agrees_with_the_app(
    exports, photos, app_probabilities
) -> None:
    """TensorFlow's decoders are not Pillow's: measured, ≥ 99 % the same top class."""
    import tensorflow as tf

    model = tf.saved_model.load(str(exports("savedmodel").path / "saved_model"))
    encoded = tf.constant([p.read_bytes() for p in photos])
    from_bytes = model.signatures["from_image_bytes"](image_bytes=encoded)["output_0"].numpy()
    app = app_probabilities
    agreement = float(np.mean(from_bytes.argmax(1) == app.argmax(1)))
    largest = np.abs(from_bytes - app).max()
    print(f"from_image_bytes: agreement {agreement:.3f}, max |Δp| {largest:.4f}")
    # A near-tie can go either way under a grey level of difference: decided photos only.
    margin = np.diff(np.sort(app, axis=1)[:, -2:], axis=1)[:, 0]
    decided = margin > 2 * largest
    assert decided.sum() >= 0.8 * len(photos)
    assert np.mean(from_bytes.argmax(1)[decided] == app.argmax(1)[decided]) >= 0.99


def test_int8_export_is_integer_and_measured(exports, run, photos) -> None:
    from ai_edge_litert.interpreter import Interpreter

    result = exports("tflite-int8")
    path = result.path / "model_int8.tflite"
    interpreter = Interpreter(str(path))
    kinds = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert np.int8 in kinds  # quantized weights and activations inside
    given = interpreter.get_input_details()[0]
    assert given["dtype"] == np.uint8  # raw pixels, as the float exports
    assert path.stat().st_size < 0.35 * exports("tflite").model_bytes
    quantized = _through_runtime(result, photos)
    # The softmax itself is quantized, in steps of 1/256.
    assert np.allclose(quantized.sum(1), 1.0, atol=5 / 256) and (quantized >= 0).all()
    q = result.quantized
    assert q is not None and q.photos == len(run.metadata.split.val)
    card = (result.path / "model_card.md").read_text()
    assert f"{q.int8_accuracy:.1%}" in card and f"{q.float_accuracy:.1%}" in card


@pytest.mark.skipif(
    not __import__("flower_model.model.backbone").model.backbone.weights_status().available,
    reason="the ≥ 97 % int8 agreement is a property of ImageNet features; no ImageNet weights "
    "file on this machine (a random ResNet50 amplifies integer rounding: measured 16-34 %)",
)
def test_int8_agrees_with_float_with_imagenet_weights(sample, tmp_path, monkeypatch) -> None:
    from flower_model.export.exporter import export_run
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    monkeypatch.setenv("FLOWER_LENS_HOME", str(tmp_path))
    info = train(sample, TrainConfig(epochs=5, batch_size=8, weights="imagenet"))
    result = export_run(info, "tflite-int8", tmp_path / "int8")
    assert result.quantized is not None and result.quantized.top1_agreement >= 0.97


@pytest.mark.parametrize("fmt", [*FLOAT_FORMATS, "tflite-int8"])
def test_predict_script_alone_gives_the_same_numbers(fmt, exports, classifier, photos, tmp_path):
    """predict.py in a fresh process, from another folder, with no flower_model on its path."""
    result = exports(fmt)
    chosen = photos[:: max(1, len(photos) // 3)][:3]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run(
        [sys.executable, "-I", str(result.path / "predict.py"), "--json", *map(str, chosen)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    script = np.array([[row["probabilities"][c] for c in classifier.class_names] for row in rows])
    reference = (
        _app(classifier, chosen) if fmt != "tflite-int8" else _through_runtime(result, chosen)
    )
    assert np.abs(script - reference).max() <= TOLERANCE


def test_zip_export_holds_the_folder(keras_zip) -> None:
    result = keras_zip()
    with zipfile.ZipFile(result.path) as archive:
        names = set(archive.namelist())
    assert {"flowers/model.keras", "flowers/labels.txt", "flowers/predict.py"} <= names
    assert "flowers/model_card.md" in names and "flowers/export.json" in names
    assert [p.name for p in result.path.parent.iterdir()] == ["flowers.zip"]


def test_model_card_says_what_a_user_needs(exports, run) -> None:
    card = (exports("keras").path / "model_card.md").read_text()
    meta = run.metadata
    for fact in (
        run.run_id,
        "none (no transfer learning)",
        "uint8 RGB pixels, shape (batch, 224, 224, 3)",
        f"{meta.evaluation.accuracy:.1%}",
        f"{len(meta.split.train)} training, {len(meta.split.val)} validation",
        "tensorflow 2.21.0",
        "| daisy |",
        "pip install",
    ):
        assert fact in card, fact


def test_existing_destination_is_refused_and_only_an_export_replaced(
    run, exports, tmp_path
) -> None:
    import shutil

    from flower_model.export.exporter import export_run
    from flower_model.export.formats import ExportError

    target = tmp_path / "out"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="already exists"):
        export_run(run, "keras", target)
    with pytest.raises(ExportError, match="is not an export: not replaced"):
        export_run(run, "keras", target, replace=True)
    assert (target / "mine.txt").read_text() == "keep"
    export = tmp_path / "export"
    first = exports("keras")  # an export already there: a copy of the module's
    shutil.copytree(first.path, export)
    (export / "extra.txt").write_text("from the first export")
    second = export_run(run, "keras", export, replace=True)
    assert (export / "model.keras").is_file() and not (export / "extra.txt").exists()
    assert second.manifest.exported >= first.manifest.exported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "out"]


def _with_writer(monkeypatch, fmt: str, writer) -> None:
    import dataclasses

    from flower_model.export import formats

    monkeypatch.setitem(
        formats.FORMATS, fmt, dataclasses.replace(formats.FORMATS[fmt], writer=writer)
    )


def test_failure_midway_leaves_nothing(run, tmp_path, monkeypatch) -> None:
    from flower_model.export import exporter as export

    def broken(model, target, info, progress):
        target.write_bytes(b"half a model")
        raise RuntimeError("converter crashed\nwith a long C++ trace")

    _with_writer(monkeypatch, "onnx", broken)
    with pytest.raises(export.ExportError) as caught:
        export.export_run(run, "onnx", tmp_path / "out.zip")
    assert str(caught.value) == "the ONNX export failed: converter crashed"
    assert list(tmp_path.iterdir()) == []


def test_a_runtime_that_cannot_load_is_one_line(run, tmp_path, monkeypatch) -> None:
    """The check runs the export's predict.py: a missing runtime is a line, not a traceback."""
    from flower_model.export import exporter as export

    def missing_runtime(folder):
        raise ModuleNotFoundError("No module named 'onnxruntime'")

    monkeypatch.setattr(export, "load_predictor", missing_runtime)
    with pytest.raises(export.ExportError) as caught:
        export.export_run(run, "keras", tmp_path / "out")
    assert str(caught.value) == "the Keras export failed: No module named 'onnxruntime'"
    assert list(tmp_path.iterdir()) == []


def test_stop_while_calibrating_is_a_stop_and_leaves_nothing(run, tmp_path) -> None:
    from flower_model.core.errors import TrainingCancelled
    from flower_model.export.exporter import export_run

    def stop(what: str, share: float) -> None:
        if what.startswith("calibrating int8 on training photo 3/"):
            raise TrainingCancelled("export stopped; nothing was kept")

    with pytest.raises(TrainingCancelled):
        export_run(run, "tflite-int8", tmp_path / "out.zip", progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_a_disagreeing_export_is_not_kept(run, tmp_path, monkeypatch) -> None:
    from flower_model.export import exporter as export
    from flower_model.export.parity import Parity

    monkeypatch.setattr(
        export, "check_export", lambda *args: (Parity(10, 0.5, 0.9), "validation photos")
    )
    with pytest.raises(export.ExportError, match="does not give the app's probabilities"):
        export.export_run(run, "keras", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_replace_puts_the_old_export_back(run, keras_zip, tmp_path, monkeypatch) -> None:
    import shutil

    from flower_model.export import exporter as export

    target = tmp_path / "out.zip"
    shutil.copy(keras_zip().path, target)  # an export already there: a copy of the module's
    before = target.read_bytes()
    real_replace, calls = os.replace, []

    def failing_second(source, destination):
        calls.append((Path(source).name, Path(destination).name))
        if len(calls) == 2:  # the new export onto the destination
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(export.os, "replace", failing_second)
    with pytest.raises(export.ExportError, match="cannot write the export"):
        export.export_run(run, "keras", target, replace=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.zip"]


def test_bad_requests_are_one_line(run, tmp_path) -> None:
    from flower_model.export.exporter import export_run

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (lambda: export_run(run, "pdf", tmp_path / "x"), "no export format 'pdf'"),
        (lambda: export_run(run, "keras", blocker / "inside"), "cannot write the export in"),
    ]
    for call, message in cases:
        with pytest.raises(FlowerLensError) as caught:
            call()
        assert message in str(caught.value) and "\n" not in str(caught.value)


def test_broken_run_is_one_line(run, tmp_path) -> None:
    import shutil

    from flower_model.core.errors import RunError
    from flower_model.export.exporter import export_run
    from flower_model.runs.store import RunInfo

    copy = tmp_path / "runs" / run.run_id
    shutil.copytree(run.path, copy)
    (copy / "model.keras").write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(RunError, match="cannot load the model"):
        export_run(RunInfo.of(run.run_id, copy, run.metadata), "keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".partial") for p in tmp_path.iterdir())


def test_int8_without_training_photos_says_so(run, tmp_path, monkeypatch) -> None:
    from flower_model.export import exporter as export
    from flower_model.export import formats

    monkeypatch.setattr(formats, "split_photos", lambda info, which: [])
    with pytest.raises(export.ExportError, match="calibrated on the run's training photos"):
        export.export_run(run, "tflite-int8", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_an_export_another_process_writes_is_waited_for_and_its_files_left_alone(
    run, monkeypatch
) -> None:
    """Two servers on one workspace: the second waits for the first's export lock; holding
    it, only this export's leftovers are removed, never another export's files in progress."""
    from flower_model.core.events import CancelToken
    from flower_model.export.exporter import app_export_path
    from flower_model.service.jobs import export_fingerprint, export_task
    from tests.core.test_locks import hold_elsewhere

    destination = app_export_path(run.run_id, "keras")
    destination.unlink(missing_ok=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    in_progress = destination.parent / ".partial-flower-lens-another-onnx.zip-a1b2c3"
    in_progress.mkdir(exist_ok=True)
    killed = destination.parent / f".partial-{destination.name}-d4e5f6"
    killed.mkdir(exist_ok=True)
    holder = hold_elsewhere(export_fingerprint(run.run_id, "keras"), 2.0)
    events = []
    try:
        assert export_task(run.run_id, "keras", events.append, CancelToken()) == run.run_id
    finally:
        holder.wait(timeout=60)
    messages = [e.message for e in events if e.kind == "phase"]
    assert messages[0].startswith("another process on this workspace is writing this export")
    assert destination.is_file()
    assert in_progress.is_dir() and not killed.exists()
    in_progress.rmdir()
