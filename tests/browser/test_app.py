"""Every page, headless, through Streamlit's AppTest: empty states, the sample, Train, Classify.

No browser and no server: the pages run in this process, their jobs in the app's worker.
Trained runs and cached features come from workspace templates made once per module or
session (conftest.py); what needs ResNet50 itself is marked resnet.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from flower_model.runs import store as runs
from tests.conftest import REPO, copy_home, know_the_weights, stand_in_features, tiny_backbone

PAGES = (
    "pages/home.py",
    "pages/explore.py",
    "pages/data_issues.py",
    "pages/train.py",
    "pages/evaluate.py",
    "pages/classify.py",
)


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.run()
    if page != "pages/home.py":
        app.switch_page(page)
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def open_tab(app: AppTest, label: str, key: str = "explore-view") -> AppTest:
    """Open one of a page's tabs (Explore's by default), as a click on it does: only the
    open tab is drawn."""
    app.session_state[key] = label
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(app: AppTest) -> str:
    parts = [
        e.value
        for kind in ("markdown", "info", "warning", "success", "error", "caption")
        for e in app.get(kind)
    ]
    return "\n".join(str(p) for p in parts)


def charts(app: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def title(chart: dict) -> str:
    return chart["layout"].get("title", {}).get("text", "")


def values(array) -> list:
    """Return a plotly data array as a list, decoding plotly's base64 typed arrays."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def wait_until(app: AppTest, done, timeout: float = 180) -> None:
    """Run the page again until `done(app)`: each time the app's running job has ended (or
    after a second, when none runs), rather than every second while the job works."""
    from flower_model.ui import session

    start = time.time()
    while not done(app):
        left = timeout - (time.time() - start)
        assert left > 0, texts(app)
        running = [job for job in session.job_board().jobs() if job.running]
        if not running or not running[-1].wait(min(left, 30)):  # the oldest first
            time.sleep(min(1, max(left, 0)))
        app.run()
        assert not app.exception, [e.value for e in app.exception]


@pytest.fixture
def empty(fresh_home, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FLOWER_LENS_DATA", raising=False)
    return fresh_home


@pytest.fixture
def with_sample(fresh_home, sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWER_LENS_DATA", str(sample_dir))
    return sample_dir


@pytest.fixture(scope="module")
def trained_template(sample, stand_in_template: Path, tmp_path_factory) -> Path:
    """A workspace with one run trained on the sample (on its stand-in features)."""
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    home = tmp_path_factory.mktemp("trained") / "home"
    with pytest.MonkeyPatch.context() as patch:
        copy_home(stand_in_template, home, patch)
        train(sample, TrainConfig(epochs=2, batch_size=8, weights="none", patience=0))
    return home


@pytest.fixture
def trained(trained_template: Path, sample_dir: Path, tmp_path: Path, monkeypatch):
    """A workspace of the test's own holding one trained run (returned), with the sample as
    the app's dataset; the run classifies under `tiny_backbone`'s network."""
    copy_home(trained_template, tmp_path / "home", monkeypatch)
    monkeypatch.setenv("FLOWER_LENS_DATA", str(sample_dir))
    with tiny_backbone():
        yield runs.get_run()


@pytest.fixture
def with_cached_sample(stand_in_home: Path, sample_dir: Path, monkeypatch) -> Path:
    """The sample as the app's dataset, in a workspace that has its features cached."""
    monkeypatch.setenv("FLOWER_LENS_DATA", str(sample_dir))
    return sample_dir


def photo_bytes(sample) -> bytes:
    return sample.path_of(sample.records[0]).read_bytes()


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("pages/home.py", "No dataset chosen yet"),
        ("pages/explore.py", "Choose a dataset above"),
        ("pages/data_issues.py", "Choose a dataset on Explore first"),
        ("pages/train.py", "No dataset yet"),
        ("pages/evaluate.py", "No trained model yet"),
        ("pages/classify.py", "No trained model yet"),
    ],
)
def test_every_page_has_an_empty_state(empty, page: str, expected: str) -> None:
    app = open_page(page)
    assert expected in texts(app)


def test_home_shows_status_at_a_glance(trained) -> None:
    app = open_page("pages/home.py")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["photos"] == "40"
    assert metrics["runs · latest accuracy"].startswith("1 · ")
    assert "no transfer learning" in texts(app)
    assert "Not on this machine" in texts(app)  # no ImageNet weights on the test machines


def test_explore_shows_the_sample(with_sample) -> None:
    app = open_page("pages/explore.py")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"photos": "40", "classes": "5", "smallest class": "8", "skipped files": "0"}
    assert len(app.get("image")) == 18  # one page of the grid, the open tab
    assert not [c for c in charts(app) if title(c) == "Photos per class"]  # a closed tab's
    open_tab(app, "Classes and sizes")
    assert not app.get("image")
    counts = next(c for c in charts(app) if title(c) == "Photos per class")
    assert sorted(bar["x"][0] for bar in counts["data"]) == [
        "daisy",
        "dandelion",
        "rose",
        "sunflower",
        "tulip",
    ]
    open_tab(app, "Skipped files (0)")
    assert "Every file in the class folders is a usable photo" in texts(app)


def test_explore_computes_features_then_draws_the_map(
    with_sample, fresh_home, warm_template
) -> None:
    know_the_weights(warm_template, fresh_home)  # not the features: they are computed
    app = open_tab(open_page("pages/explore.py"), "Feature map")
    compute = next(b for b in app.button if b.label.startswith("Compute features"))
    compute.click()
    app.run()
    wait_until(app, lambda a: any(title(c).startswith("PCA") for c in charts(a)))
    feature_map = next(c for c in charts(app) if title(c).startswith("PCA"))
    assert sum(len(values(trace["x"])) for trace in feature_map["data"]) == 40
    assert {trace["name"] for trace in feature_map["data"]} == {
        "daisy",
        "dandelion",
        "rose",
        "sunflower",
        "tulip",
    }


def test_explore_computes_a_chosen_datasets_features_in_the_background(
    with_sample, fresh_home, warm_template, monkeypatch: pytest.MonkeyPatch
) -> None:
    know_the_weights(warm_template, fresh_home)  # not the features: they are computed
    monkeypatch.setenv("FLOWER_LENS_BACKGROUND_FEATURES", "1")
    app = open_page("pages/explore.py")
    assert app.toggle(key="background-features").value is True
    # Started at once, its progress above the tabs; the map follows when it ends.
    assert app.get("progress")
    open_tab(app, "Feature map")
    drawn = lambda a: any(title(c).startswith("PCA") for c in charts(a))  # noqa: E731
    assert "being computed" in texts(app) or drawn(app)  # it may have ended meanwhile
    # The map and the end of the progress may come in either order on a busy machine.
    wait_until(app, lambda a: drawn(a) and not a.get("progress"))
    # Every feature is cached now: another visit starts nothing.
    again = open_tab(open_page("pages/explore.py"), "Feature map")
    assert not again.get("progress") and any(title(c).startswith("PCA") for c in charts(again))


def test_with_background_features_off_nothing_starts_by_itself(with_sample) -> None:
    app = open_page("pages/explore.py")  # the tests' server turns the default off
    assert app.toggle(key="background-features").value is False
    assert not app.get("progress")
    open_tab(app, "Feature map")
    assert any(b.label.startswith("Compute features") for b in app.button)


def test_explore_audits_and_a_decision_reaches_training_and_is_undone(
    fresh_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.data.dataset import scan_dataset
    from flower_model.data.decisions import decide, load_decisions
    from flower_model.data.synthetic import write_dirty_photos

    write_dirty_photos(tmp_path / "dirty", per_class=20, seed=4)
    monkeypatch.setenv("FLOWER_LENS_DATA", str(tmp_path / "dirty"))
    sample = scan_dataset(tmp_path / "dirty")
    stand_in_features(sample)  # the audit finds them cached: no ResNet50 in the worker
    ana = open_page("pages/data_issues.py")  # one visitor (a browser session)
    next(b for b in ana.button if b.label.startswith("Audit this dataset")).click()
    ana.run()
    wait_until(ana, lambda a: any(m.label == "label issues" for m in a.metric))
    metrics = {m.label: int(m.value) for m in ana.metric if m.label != "photos"}
    assert metrics["decided"] == 0 and metrics["label issues"] > 0
    assert "not meaningful" in texts(ana)  # random weights here, and the tab says so
    next(b for b in ana.button if b.label == "Leave out").click()
    ana.run()
    owner = ana.session_state["visitor"]
    assert [d.action for d in load_decisions(sample.root, owner).items] == ["exclude"]
    assert load_decisions(sample.root).items == ()  # hers, not the folder's
    assert "Decided: left out." in texts(ana)

    ana.switch_page("pages/train.py")
    ana.run()
    toggle = next(t for t in ana.toggle if t.label.startswith("Train with the decisions"))
    assert "1 photo(s) left out" in toggle.label and toggle.value

    # Another visitor: none of her decisions on his Train page, none to undo on his.
    ben = open_page("pages/train.py")
    assert not [t for t in ben.toggle if t.label.startswith("Train with the decisions")]
    ben.switch_page("pages/data_issues.py")
    ben.run()
    assert {m.label: m.value for m in ben.metric}["decided"] == "0"
    assert not [b for b in ben.button if b.label == "Undo all"]
    # The folder's published decisions (the command line's) are his only if he chooses.
    decide(sample, sample.records[0].path, "exclude", reason="the host's")
    ben.switch_page("pages/train.py")
    ben.run()
    assert not [t for t in ben.toggle if t.label.startswith("Train with the decisions")]
    ben.toggle(key="train-with-published").set_value(True).run()
    toggle = next(t for t in ben.toggle if t.label.startswith("Train with the decisions"))
    assert "1 photo(s) left out" in toggle.label

    ana.switch_page("pages/data_issues.py")
    ana.run()
    next(b for b in ana.button if b.label == "Undo").click()
    ana.run()
    assert load_decisions(sample.root, owner).items == ()
    assert len(load_decisions(sample.root).items) == 1  # the folder's are not hers to undo


def small_dataset(folder: Path, per_class: int = 3) -> Path:
    from tests.conftest import make_photo

    for i, name in enumerate(("oak", "ash")):
        for j in range(per_class):
            make_photo(folder / name / f"{j}.jpg", (40 * i, 150, 40), seed=10 * i + j)
    return folder


def open_with_link(page: str, **params: str) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params.update(params)
    app.run()
    app.switch_page(page)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_a_visitors_dataset_choice_is_theirs_alone(
    with_sample, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_home
) -> None:
    leaves = small_dataset(tmp_path / "leaves")
    monkeypatch.setenv("FLOWER_LENS_DATA_ROOTS", f"{sample_dir}:{leaves}")
    first = open_page("pages/explore.py")
    chooser = next(s for s in first.selectbox if s.label == "Dataset folder")
    assert [Path(o).name for o in chooser.options] == ["flowers", "leaves"]
    chooser.select(leaves.resolve()).run()
    assert {m.label: m.value for m in first.metric}["photos"] == "6"
    assert first.query_params["data"] == str(leaves.resolve())  # a link that can be shared
    # Another visitor still gets the server's default, and nothing was written server-wide.
    second = open_page("pages/explore.py")
    assert {m.label: m.value for m in second.metric}["photos"] == "40"
    assert not (fresh_home / "settings.json").exists()
    # The shared link opens the same dataset for whoever follows it.
    third = open_with_link("pages/explore.py", data=first.query_params["data"])
    assert {m.label: m.value for m in third.metric}["photos"] == "6"


@pytest.mark.parametrize("where", ["/proc", "/etc", "../../.."])
def test_a_link_outside_the_data_roots_is_refused_in_one_line(with_sample, where: str) -> None:
    for page in ("pages/explore.py", "pages/train.py", "pages/home.py"):
        app = open_with_link(page, data=where)
        assert any("FLOWER_LENS_DATA_ROOTS" in e.value for e in app.error), texts(app)
        assert not app.metric or {m.label: m.value for m in app.metric}.get("photos") != "40"


def test_a_typed_folder_is_offered_only_when_the_host_lists_roots(
    with_sample, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_page("pages/explore.py")
    assert not app.text_input  # the default roots: a choice, no free text
    monkeypatch.setenv("FLOWER_LENS_DATA_ROOTS", str(sample_dir))
    app = open_page("pages/explore.py")
    app.text_input[0].set_value(str(tmp_path))
    next(b for b in app.button if b.label == "Use the typed folder").click().run()
    assert any("outside the folders this app may read" in e.value for e in app.error)
    app.text_input[0].set_value(str(sample_dir / "nowhere"))
    next(b for b in app.button if b.label == "Use the typed folder").click().run()
    assert any("does not exist" in e.value for e in app.error)


def test_a_visitor_uploads_a_zip_then_photos_of_a_class_then_deletes_it(
    with_sample, tmp_path: Path, fresh_home: Path
) -> None:
    import zipfile

    folder = small_dataset(tmp_path / "garden")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for photo in folder.rglob("*.jpg"):
            archive.write(photo, photo.relative_to(tmp_path).as_posix())
        archive.writestr("../escape.jpg", b"x")
    app = open_page("pages/explore.py")
    app.radio[0].set_value("Upload photos").run()
    app.text_input(key="new_dataset_name").set_value("garden")
    app.radio(key="how").set_value("A .zip of class folders").run()
    app.file_uploader(key="zip").upload("garden.zip", buffer.getvalue(), "application/zip")
    app.run()
    next(b for b in app.button if b.label == "Add").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Added 6 photo(s): ash 3, oak 3." in texts(app)
    assert {m.label: m.value for m in app.metric}["photos"] == "6"
    stored = next(p for p in (fresh_home / "datasets").iterdir() if not p.name.startswith("."))
    assert stored.name.startswith("garden-") and not (fresh_home / "escape.jpg").exists()
    # A third class, photo by photo, into the same dataset.
    app.radio[0].set_value("Upload photos").run()
    app.selectbox(key="uploaded_dataset").select(stored).run()
    app.radio(key="how").set_value("Photos of one class").run()
    app.text_input(key="class_name").set_value("elm")
    for i in range(2):
        app.file_uploader(key="class_photos").upload(f"e{i}.png", photo_png(i), "image/png")
    app.run()
    next(b for b in app.button if b.label == "Add").click().run()
    assert {m.label: m.value for m in app.metric}["classes"] == "3"
    # It is hers: another visitor neither sees it nor opens it without her share link.
    link = next(c.value for c in app.code if "share=" in c.value)
    other = open_page("pages/explore.py")
    other.radio[0].set_value("Upload photos").run()
    assert stored not in other.selectbox(key="uploaded_dataset").options
    other.radio[0].set_value("A folder on this server").run()
    chooser = next(s for s in other.selectbox if s.label == "Dataset folder")
    assert not any(Path(o).name == stored.name for o in chooser.options)
    other.query_params["data"] = str(stored)
    other.run()
    assert "opens only with the share link its owner gives you" in texts(other)
    assert "photos" not in {m.label for m in other.metric}
    other.query_params["share"] = link.split("share=")[1]
    other.run()
    assert {m.label: m.value for m in other.metric}["classes"] == "3"  # shared: he may look
    app.radio[0].set_value("Upload photos").run()
    app.selectbox(key="uploaded_dataset").select(stored).run()
    next(b for b in app.button if b.label == "Delete this dataset").click().run()
    assert not stored.exists()


def test_explore_shows_photos_of_any_mode_and_shape(
    fresh_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = small_dataset(tmp_path / "odd")
    Image.fromarray(np.full((40, 30), 40000, dtype=np.uint16)).save(folder / "oak" / "deep.png")
    Image.new("RGB", (6000, 2), (0, 90, 0)).save(folder / "ash" / "strip.jpg")
    Image.new("P", (50, 50), 3).save(folder / "ash" / "palette.gif")
    monkeypatch.setenv("FLOWER_LENS_DATA", str(folder))
    app = open_page("pages/explore.py")
    assert {m.label: m.value for m in app.metric}["photos"] == "9"
    assert len(app.get("image")) == 9


def test_train_click_draws_curves_and_saves_a_run(with_cached_sample) -> None:
    from flower_model.runs.store import list_runs

    app = open_page("pages/train.py")
    assert app.radio[0].value == "none"  # offline: no transfer learning is preselected
    next(n for n in app.number_input if n.label == "Epochs").set_value(3)
    next(b for b in app.button if b.label == "Train").click()
    app.run()
    wait_until(app, lambda a: any("Saved run" in s.value for s in a.success))
    runs = list_runs()
    assert len(runs) == 1 and runs[0].run_id in app.success[0].value
    loss = next(c for c in charts(app) if title(c) == "Loss")
    assert [len(values(trace["y"])) for trace in loss["data"]] == [3, 3]  # train and validation
    assert runs[0].metadata.epochs_completed == 3
    # The run is the visitor's: recorded, and said on Evaluate ("by you"), to others too.
    assert runs[0].owner == app.session_state["visitor"] == runs[0].metadata.owner
    app.switch_page("pages/evaluate.py")
    app.run()
    (picker,) = [s for s in app.selectbox if s.label == "Run"]
    assert picker.options[0].endswith("· by you")  # the one run
    other = open_page("pages/evaluate.py")
    (picker,) = [s for s in other.selectbox if s.label == "Run"]
    assert picker.options[0].endswith("· by another visitor")
    assert not [b for b in other.button if b.label == "Delete it"]  # his to look at, not delete
    next(b for b in app.button if b.label == "Delete it").click().run()
    assert list_runs() == [] and "No trained model yet" in texts(app)


# A server that took a training and was killed before it ended (its worker never ran it).
KILLED_SERVER = """
import os, sys, threading
from pathlib import Path
from flower_model.data.dataset import scan_dataset
from flower_model.model.config import TrainConfig
from flower_model.service.jobs import JobBoard

class Stuck:
    def start(self): pass
    def run(self, task, on_event, cancelled): threading.Event().wait()

board = JobBoard(Stuck())
config = TrainConfig(epochs=5000, batch_size=8, weights="none", patience=0, seed=11)
board.start_training(scan_dataset(Path(sys.argv[1])), config)
os._exit(9)
"""


def test_a_training_cut_by_a_server_restart_is_said_and_starts_again(with_cached_sample) -> None:
    from flower_model.data.dataset import scan_dataset
    from flower_model.ui import session

    session.forget_job_board()  # as a restart: the page's run starts a new board
    command = [sys.executable, "-c", KILLED_SERVER, str(with_cached_sample)]
    assert subprocess.run(command, cwd=REPO, timeout=300).returncode == 9
    app = open_page("pages/train.py")  # the next server's first page run
    (said,) = [w.value for w in app.warning if "interrupted by a server restart" in w.value]
    assert said.startswith("A training, asked for at")
    next(b for b in app.button if b.label == "Start it again with the same settings").click()
    app.run()
    assert not app.exception
    job = session.job_board().running_on(scan_dataset(with_cached_sample).fingerprint)
    try:
        assert job is not None and job.kind == "training"
        assert job.asked.settings["config"]["seed"] == 11  # the settings it was asked with
    finally:
        if job is not None:
            job.stop()
            assert job.wait(300)


def test_tune_searches_fills_the_form_and_the_run_records_its_score(with_cached_sample) -> None:
    from flower_model.runs.store import list_runs

    app = open_page("pages/train.py")
    next(n for n in app.number_input if n.label == "Trials").set_value(3)
    next(n for n in app.number_input if n.label == "Epochs").set_value(4)
    next(b for b in app.button if b.label == "Tune").click()
    app.run()
    wait_until(app, lambda a: any(h.value == "Tune: the latest search" for h in a.subheader))
    (table,) = app.dataframe
    assert len(table.value) == 3 and sorted(table.value["trial"]) == [1, 2, 3]
    assert {"learning rate", "batch", "accuracy", "ended"} <= set(table.value.columns)
    assert {title(c) for c in charts(app)} >= {"Learning-rate range test"}
    fill = next(b for b in app.button if b.label.startswith("Train with these settings"))
    fill.click().run()
    assert app.session_state["setting-cross_validation"] == 3
    rate = app.session_state["setting-learning_rate"]
    assert f"learning rate {rate:.2g}" in fill.label
    next(b for b in app.button if b.label == "Train").click()
    app.run()
    wait_until(app, lambda a: any("Saved run" in s.value for s in a.success))
    assert "3-fold cross-validation on the training photos" in app.success[0].value
    (run,) = list_runs()
    assert run.metadata.config.learning_rate == rate
    assert len(run.metadata.cross_validation.accuracy) == 3


def test_classify_shows_one_bar_per_class(trained, sample) -> None:
    app = open_page("pages/classify.py")
    app.file_uploader[0].upload("rose.jpg", photo_bytes(sample), "image/jpeg")
    app.run()
    assert not app.exception
    (bars,) = [c for c in charts(app) if c["data"][0].get("orientation") == "h"]
    assert sorted(values(bars["data"][0]["y"])) == sorted(trained.class_names)
    assert sum(values(bars["data"][0]["x"])) == pytest.approx(1.0, abs=1e-4)
    # The not-sure threshold is the run's own, chosen on its held-out photos; ten of them
    # are too few to rest one on, and the page says the default is used.
    calibration = trained.metadata.calibration
    if calibration.threshold is None:
        assert "the default 60%" in texts(app)
    else:
        assert f"{calibration.threshold.precision:.0%} of those above it" in texts(app)
    # Calibrated probabilities, offered when a temperature was fitted: bars rescaled.
    toggles = [t for t in app.toggle if t.label == "Calibrated probabilities"]
    assert bool(toggles) == (calibration.temperature is not None)
    if toggles:
        toggles[0].set_value(True).run()
        (scaled,) = [c for c in charts(app) if c["data"][0].get("orientation") == "h"]
        assert sum(values(scaled["data"][0]["x"])) == pytest.approx(1.0, abs=1e-4)


def test_classify_loads_the_model_before_a_photo_is_dropped(trained) -> None:
    from flower_model.ui import session

    session.classifiers.clear()  # a server that never loaded it
    app = open_page("pages/classify.py")
    assert not app.get("image")  # no photo dropped
    shelf = session.classifiers()
    deadline = time.monotonic() + 300
    while not shelf.ready(trained.run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert shelf.ready(trained.run_id)


def test_classify_bad_upload_is_named_and_others_still_show(trained, sample) -> None:
    app = open_page("pages/classify.py")
    app.file_uploader[0].upload("broken.jpg", b"\xff\xd8 not really a jpeg", "image/jpeg")
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (240, 200, 30)).save(buffer, "PNG")
    app.file_uploader[0].upload("yellow.png", buffer.getvalue(), "image/png")
    app.run()
    assert any("broken.jpg" in e.value for e in app.error)
    assert len([c for c in charts(app) if c["data"][0].get("orientation") == "h"]) == 1


def test_classify_many_photos_each_classified_once_in_batches(
    trained, sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flower_model.inference.predict import Classifier

    given: list[int] = []
    real_stream = Classifier.classify_stream

    def counting_stream(self, sources, batch_size=16):
        given.append(len(sources))
        return real_stream(self, sources, batch_size)

    monkeypatch.setattr(Classifier, "classify_stream", counting_stream)
    app = open_page("pages/classify.py")
    photos = [sample.path_of(r).read_bytes() for r in sample.records[:20]]
    for i, data in enumerate(photos):
        app.file_uploader[0].upload(f"photo{i}.jpg", data, "image/jpeg")
    app.file_uploader[0].upload("broken.jpg", b"\xff\xd8 not really a jpeg", "image/jpeg")
    app.run()
    assert not app.exception
    # The newest 12 on the first page: the broken file's one line, and 11 photos' bars.
    bars = [c for c in charts(app) if c["data"][0].get("orientation") == "h"]
    assert len(bars) == 11 and [e.value for e in app.error] == [
        "broken.jpg: not an image this app reads (JPEG, PNG, GIF, WebP or BMP)"
    ]
    assert given == [21]  # one pass over the new photos, in batches inside
    next(n for n in app.number_input if n.label == "Page").set_value(2).run()
    assert len([c for c in charts(app) if c["data"][0].get("orientation") == "h"]) == 9
    assert given == [21]  # another page draws, nothing is classified again
    # One more photo later (AppTest sends the whole list again, as the browser does): only
    # the new one is classified; the others' results are kept.
    for i, data in enumerate(photos):
        app.file_uploader[0].upload(f"photo{i}.jpg", data, "image/jpeg")
    app.file_uploader[0].upload("one-more.png", photo_png(), "image/png")
    app.run()
    assert given == [21, 1]


def photo_png(shade: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (240, 200, 30 + shade)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_upload_limit_is_the_librarys_and_is_shown(trained) -> None:
    import tomllib

    from flower_model.data.images import MAX_FILE_BYTES

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == MAX_FILE_BYTES
    app = open_page("pages/classify.py")
    assert f"up to {MAX_FILE_BYTES // 2**20} MB each" in app.file_uploader[0].label


def test_classify_grad_cam_overlay(trained, sample) -> None:
    app = open_page("pages/classify.py")
    app.toggle[0].set_value(True)
    app.file_uploader[0].upload("rose.jpg", photo_bytes(sample), "image/jpeg")
    app.run()
    assert not app.exception
    assert any("where it looked" in str(img.proto) for img in app.get("image"))


def test_evaluate_shows_metrics_and_compares_runs(trained, sample) -> None:
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    stand_in_features(sample, seed=7)  # the features of the random weights of seed 7
    train(sample, TrainConfig(epochs=3, batch_size=8, weights="none", patience=0, seed=7))
    app = open_page("pages/evaluate.py")
    metrics = {m.label: m.value for m in app.metric}
    latest = runs.list_runs()[0].metadata
    assert metrics["held-out photos"] == str(len(latest.split.val))
    titles = [title(c) for c in charts(app)]
    assert "Confusion matrix · click a cell to see its photos" in titles and "Loss" in titles
    assert "no transfer learning" in texts(app)
    assert "val loss" not in titles  # a closed tab is not drawn
    # Calibration: the run's own numbers, its reliability diagram and coverage curve.
    calibration = latest.calibration
    assert metrics["calibration error (ECE)"] == f"{calibration.ece:.1%}"
    temperature = calibration.temperature
    assert metrics["temperature"] == (f"{temperature:.2f}" if temperature is not None else "—")
    assert "Reliability" in titles and "Accuracy of the photos answered" in titles
    open_tab(app, "Compare runs", key="evaluate-view")
    assert "val loss" in [title(c) for c in charts(app)]  # two runs picked by default


@pytest.mark.resnet
def test_evaluate_exports_a_run_for_download(warm_home, sample, sample_dir, monkeypatch) -> None:
    """Export tab: the formats with their sizes; Prepare runs the export in the worker with
    its progress; then a download button, the check against the app and the model card."""
    from flower_model.export.exporter import app_export_path
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    # A run on ResNet50's own features (warm_home): the export is checked against them.
    monkeypatch.setenv("FLOWER_LENS_DATA", str(sample_dir))
    trained = train(sample, TrainConfig(epochs=2, batch_size=8, weights="none", patience=0))
    app = open_tab(open_page("pages/evaluate.py"), "Export", key="evaluate-view")
    table = next(m.value for m in app.markdown if m.value.startswith("| Format |"))
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows][:2] == ["| Keras", "| TensorFlow SavedModel"]
    assert all("| about " in row for row in rows)
    assert not app.get("download_button")
    app.radio(key=f"export-format-{trained.run_id}").set_value("keras")
    next(b for b in app.button if b.label == "Prepare the export").click()
    app.run()
    wait_until(app, lambda a: bool(a.get("download_button")), timeout=300)
    assert app_export_path(trained.run_id, "keras").is_file()
    assert "the same top class on 100%" in texts(app)
    assert "Model card" in [e.label for e in app.expander]
    table = next(m.value for m in app.markdown if m.value.startswith("| Format |"))
    assert "MB .zip, ready" in table.splitlines()[2]


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace on a full disk: a 256 KB tmpfs filled up, where this machine may mount
    one; elsewhere, a workspace whose every write fails as a full disk's does. A dataset
    never scanned before is the app's dataset."""
    import errno

    from flower_model.core import workspace

    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)]
    try:
        mounted = subprocess.run(mount, capture_output=True, check=False).returncode == 0
    except OSError:  # no mount command
        mounted = False
    if mounted:
        with contextlib.suppress(OSError), (disk / "filler").open("wb", buffering=0) as filler:
            while True:
                filler.write(bytes(4096))
    else:

        def full(path, data) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(workspace, "write_atomic", full)
    monkeypatch.setenv("FLOWER_LENS_HOME", str(disk / "home"))
    monkeypatch.setenv("FLOWER_LENS_DATA", str(small_dataset(tmp_path / "never-scanned")))
    try:
        yield disk
    finally:
        workspace.write_cache(Path(tmp_path / "room"), "", "a test's")  # the notice cleared
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_on_every_page(full_disk: Path) -> None:
    notice = "Caches are not being saved: the disk holding the workspace"
    for page in PAGES:
        app = open_page(page)  # no exception: open_page checks
        said = [w.value for w in app.warning if w.value.startswith(notice)]
        assert len(said) == 1 and "\n" not in said[0], page
    app = open_page("pages/explore.py")
    assert {m.label: m.value for m in app.metric}["photos"] != "0"  # the dataset, read anyway


def test_home_and_explore_do_not_import_tensorflow(with_sample) -> None:
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=60)\n"
        "app.run()\n"
        "app.switch_page('pages/explore.py')\n"
        "app.run()\n"
        "assert not app.exception, app.exception\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]
