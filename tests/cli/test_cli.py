"""The command line, as a user runs it: train -> evaluate -> predict.

What a process of its own shows (TensorFlow's start-up lines kept off stderr, exit codes of
the process) is checked on real processes (`cli`); the rest runs the same `main` in this
process (`run_cli`), without starting Python and TensorFlow for every command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, built_once, run_cli

COMMANDS = (
    "download",
    "info",
    "audit",
    "extract",
    "train",
    "tune",
    "evaluate",
    "predict",
    "runs",
    "export",
    "workspace",
)
NOISE = ("absl", "cuda", "oneDNN", "I0000", "W0000", "E0000", "Traceback", "Warning")


def cli(*args: str, home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m flower_model ARGS` in a process of its own."""
    env = {**os.environ, "FLOWER_LENS_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "flower_model", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, tmp_path: Path, capfd) -> None:
    result = run_cli(capfd, command, "--help", home=tmp_path)
    assert result.returncode == 0 and "usage: python -m flower_model" in result.stdout


@pytest.mark.resnet
def test_train_evaluate_predict_round_trip(
    sample_dir: Path, known_weights_home: Path, tmp_path: Path, resnet, capfd
) -> None:
    home = known_weights_home  # no features: the first training extracts them all
    args = ("train", "--data", str(sample_dir), "--weights", "none", "--epochs", "3")
    # The first training in a process of its own: what a user sees on stderr.
    train = cli(*args, "--batch-size", "8", home=home)
    assert train.returncode == 0, train.stderr
    run_id = train.stdout.strip().splitlines()[-1]
    assert "0 from cache, 40 computed" in train.stderr
    assert "no transfer learning" in train.stderr and "epoch 3/3" in train.stderr
    # Output for people: through a pipe, whole lines; no TensorFlow or CUDA start-up lines.
    assert "\r" not in train.stderr and "features: 40/40 photos (100%)" in train.stderr
    for noise in ("absl", "cuda", "oneDNN", "I0000", "E0000"):
        assert noise not in train.stderr

    def command(*argv: str) -> subprocess.CompletedProcess:
        # The runs load under the session's ResNet50 of the same weights, built once.
        with built_once(resnet):
            return run_cli(capfd, *argv, home=home)

    again = command(*args, "--batch-size", "8")
    assert again.returncode == 0, again.stderr
    assert "40 from cache, 0 computed" in again.stderr

    runs = command("runs", "--json")
    listed = json.loads(runs.stdout)
    assert [r["run_id"] for r in listed][1] == run_id

    evaluate = command("evaluate", "--run", run_id, "--json")
    assert evaluate.returncode == 0, evaluate.stderr
    report = json.loads(evaluate.stdout)
    held_out = next(r for r in listed if r["run_id"] == run_id)["split"]["val"]
    assert report["run"] == run_id and report["count"] == len(held_out)
    assert report["accuracy"] == pytest.approx(listed[1]["evaluation"]["accuracy"])

    photo = next((sample_dir / "flowers" / "rose").iterdir())
    broken = tmp_path / "broken.jpg"
    broken.write_text("nope")
    predict = command("predict", "--run", "latest", "--json", str(photo), str(broken))
    # One file failed: the exit code says so, and the JSON still lists every file.
    assert predict.returncode == 1 and "1 of 2 file(s)" in predict.stderr
    first, second = json.loads(predict.stdout)
    assert first["file"] == photo.name
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert list(first["probabilities"]) == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    assert second == {
        "file": "broken.jpg",
        "error": "broken.jpg: not an image this app reads (JPEG, PNG, GIF, WebP or BMP)",
    }

    text = command("evaluate")
    assert text.returncode == 0 and "accuracy" in text.stdout and "confusion" in text.stdout

    # A folder is searched recursively; files of other types are named, with the reason.
    folder = tmp_path / "photos"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "a.jpg").write_bytes(photo.read_bytes())
    (folder / "b.jpg").write_bytes(photo.read_bytes())
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_text("skipped silently")
    listed = command("predict", str(folder))
    assert listed.returncode == 1
    assert [line.split(":")[0] for line in listed.stdout.splitlines()] == ["b.jpg", "a.jpg"]
    assert "notes.txt: not an image file type (.txt)" in listed.stderr
    assert "hidden" not in listed.stdout + listed.stderr
    good = command("predict", "--json", str(folder / "inner"))
    assert good.returncode == 0 and len(json.loads(good.stdout)) == 1


def test_bad_settings_are_refused_before_any_work(sample_dir: Path, tmp_path: Path, capfd) -> None:
    for flag, value in (("--seed", "-1"), ("--lr", "nan"), ("--epochs", "0")):
        result = run_cli(capfd, "train", "--data", str(sample_dir), flag, value, home=tmp_path)
        assert result.returncode == 1, result.stderr
        assert (
            len(result.stderr.strip().splitlines()) == 1 and "checking photos" not in result.stderr
        )


def test_tune_prints_each_trial_and_how_to_train_with_the_best(
    sample, stand_in_home: Path, capfd, monkeypatch
) -> None:
    from flower_model.model import search

    monkeypatch.setattr(search, "EPOCHS", (2, 4))
    args = ("tune", "--data", str(sample.root), "--weights", "none", "--trials", "3")
    result = run_cli(capfd, *args, "--epochs", "3", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "learning-rate range test: steepest fall at" in err
    assert [line.split()[1] for line in err.splitlines() if line.startswith("trial ")] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    assert "trial   1/3  lr  1.00e-03  batch  16  epochs  3" in err  # the settings given first
    assert "3-fold cross-validation on" in err and "cross-validated" in err
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"train with: python -m flower_model train --data {sample.root} --lr ")
    assert line.endswith("--cross-validation 3")
    for bad in (("--trials", "0"), ("--minutes", "-1")):
        refused = run_cli(capfd, *args, *bad)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    # Processes of their own: what a failing `python -m flower_model` prints and exits with.
    result = cli("train", "--weights", "none", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: no dataset given") and "Traceback" not in result.stderr
    missing = cli("info", "--data", str(tmp_path / "nowhere"), home=tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    no_runs = cli("predict", "x.jpg", home=tmp_path)
    assert no_runs.returncode == 1 and "no trained model yet" in no_runs.stderr
    debug = cli("--debug", "info", "--data", str(tmp_path / "nowhere"), home=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def few_photos(sample_dir: Path, folder: Path, per_class: int) -> Path:
    """Return a dataset folder of the first `per_class` photos of each of the sample's classes
    (the same files: their features are those the sample's workspace has cached)."""
    for class_dir in sorted(p for p in (sample_dir / "flowers").iterdir() if p.is_dir()):
        (folder / class_dir.name).mkdir(parents=True)
        for photo in sorted(class_dir.glob("*.jpg"))[:per_class]:
            os.link(photo, folder / class_dir.name / photo.name)
    return folder


@pytest.mark.slow
@pytest.mark.resnet
def test_export_prints_where_and_how_it_was_checked(
    sample_dir: Path, warm_home: Path, tmp_path: Path, capfd
) -> None:
    home = warm_home  # the sample's features cached: the training builds no ResNet50
    # A run of a few of the sample's photos: int8 calibrates on each training photo, and runs
    # each validation photo, in the export's process.
    data = few_photos(sample_dir, tmp_path / "few", per_class=3)
    args = ("train", "--data", str(data), "--weights", "none", "--epochs", "2")
    assert run_cli(capfd, *args, "--batch-size", "8", home=home).returncode == 0
    target = tmp_path / "out" / "flowers-int8.zip"
    # The export in a process of its own: what a user sees on stderr.
    done = cli("export", "--format", "tflite-int8", "--out", str(target), home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target) and target.is_file()
    assert "calibrating int8 on training photo" in done.stderr
    (run,) = json.loads(run_cli(capfd, "runs", "--json", home=home).stdout)
    held_out = len(run["split"]["val"])
    assert f"checked on {held_out} validation photos" in done.stderr
    assert f"int8 on all {held_out} validation photos: accuracy" in done.stderr
    # Output for people: whole lines through a pipe, none of the converters' own logs.
    assert "\r" not in done.stderr
    for noise in (*NOISE, "fully_quantize", "INFO:"):
        assert noise not in done.stderr, noise

    again = run_cli(capfd, "export", "--format", "tflite-int8", "--out", str(target), home=home)
    assert again.returncode == 1
    assert (
        again.stderr.strip() == f"error: {target} already exists: remove it or choose another --out"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for extra, message in (
        (("--run", "nope"), "error: no run matches 'nope'"),
        (("--out", str(blocker / "x")), "error: cannot write the export in"),
    ):
        failed = run_cli(capfd, "export", "--format", "keras", *extra, home=home)
        assert failed.returncode == 1 and failed.stderr.startswith(message), failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["flowers-int8.zip"]


def test_offline_download_says_what_to_do(tmp_path: Path, capfd) -> None:
    # A handle kagglehub rejects before any network access keeps this test offline.
    result = run_cli(capfd, "download", "--handle", "not a handle", home=tmp_path)
    assert result.returncode == 1 and "local folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_reports_the_dataset(sample_dir: Path, tmp_path: Path, capfd) -> None:
    result = run_cli(capfd, "info", "--data", str(sample_dir), "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 40 and report["classes"]["tulip"] == 8 and report["skipped"] == []


def test_a_reader_that_goes_away_ends_the_command_quietly(sample_dir: Path, tmp_path: Path) -> None:
    # `flower-lens info | head -1`: the reader closes the pipe before the command writes.
    env = {**os.environ, "FLOWER_LENS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flower_model", "info", "--data", str(sample_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Broken pipe" not in err and "Traceback" not in err, err


@pytest.mark.resnet
def test_audit_finds_applies_and_training_honours_the_decisions(
    known_weights_home: Path, tmp_path: Path, capfd
) -> None:
    from flower_model.data.synthetic import write_dirty_photos

    data = tmp_path / "dirty"
    planted = write_dirty_photos(data, per_class=20, seed=2)
    home = known_weights_home  # no features: the audit extracts them all
    # The audit in a process of its own: what a user sees on stderr.
    audit = cli("audit", "--data", str(data), "--weights", "none", "--top", "3", home=home)
    assert audit.returncode == 0, audit.stderr
    out = audit.stdout
    assert "not meaningful" in out and "label issues:" in out and "outliers:" in out
    assert "duplicate groups:" in out and "would be cut by a plain split" in out
    assert "\r" not in audit.stderr and "training fold 5 of 5" in audit.stderr
    assert not any(noise in audit.stderr for noise in NOISE), audit.stderr

    def command(*argv: str) -> subprocess.CompletedProcess:
        return run_cli(capfd, *argv, home=home)

    applied = command(
        "audit", "--data", str(data), "--weights", "none", "--apply", "outlier", "--json"
    )
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    excluded = {d["path"] for d in report["decisions"]["items"] if d["action"] == "exclude"}
    assert excluded == {f["path"] for f in report["outliers"]} and excluded
    assert excluded & set(planted.outliers)
    assert "training fold" not in applied.stderr  # the kept audit was read, not redone

    train = command("train", "--data", str(data), "--weights", "none", "--epochs", "1")
    assert train.returncode == 0, train.stderr
    assert f"decisions: {len(excluded)} photo(s) left out, 0 relabelled" in train.stderr
    run = json.loads(command("runs", "--json").stdout)[0]
    assert set(run["dataset"]["excluded"]) == excluded
    assert excluded.isdisjoint(run["split"]["train"] + run["split"]["val"])

    bad = command("audit", "--data", str(data), "--weights", "none", "--apply", "typos")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: the kinds to apply are label, outlier, duplicate, not typos"
    )
    forget = command("audit", "--data", str(data), "--forget")
    assert forget.returncode == 0 and "forgot every decision" in forget.stderr
    again = command("train", "--data", str(data), "--weights", "none", "--epochs", "1")
    assert "decisions:" not in again.stderr


def test_workspace_lists_uploads_by_owner_and_prunes_or_deletes_them(
    tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from flower_model.data import owners
    from flower_model.data.uploads import add_photos, create_dataset
    from tests.data.test_uploads import jpeg

    monkeypatch.setenv("FLOWER_LENS_HOME", str(tmp_path))
    hers = create_dataset("garden", owner="account:ana@example.org")
    add_photos(hers, "rose", [("a.jpg", jpeg((200, 0, 0)))])
    his = create_dataset("field", owner="session:ben")
    add_photos(his, "oak", [("a.jpg", jpeg((0, 200, 0)))])
    listed = run_cli(capfd, "workspace", "--owner", "account:ana@example.org", home=tmp_path)
    assert listed.returncode == 0
    assert hers.name in listed.stdout and his.name not in listed.stdout
    old = time.time() - 40 * 86400
    for path in (his, his / "oak", owners.ownership_file(his)):
        os.utime(path, (old, old))
    pruned = run_cli(capfd, "workspace", "--prune-days", "30", home=tmp_path)
    assert f"deleted 1 upload(s) unused for 30 days\n  {his.name}" in pruned.stdout
    assert not his.exists() and hers.is_dir()
    deleted = run_cli(capfd, "workspace", "--delete", hers.name, home=tmp_path)
    assert deleted.returncode == 0 and not hers.exists()
    # Runs by who trained them; the old ones pruned, theirs alone with --owner.
    from dataclasses import replace

    from tests.runs.test_store import METADATA_FILE, fake_run, metadata

    for run_id, owner in (
        ("20200101-000000-aaaa", "session:ben"),
        ("20200101-000000-bbbb", ""),
        (time.strftime("%Y%m%d-%H%M%S-cccc"), "session:ben"),
    ):
        folder = fake_run(tmp_path / "runs", run_id)
        meta = replace(metadata(run_id), owner=owner)
        (folder / METADATA_FILE).write_text(json.dumps(meta.to_json()))
    listed = run_cli(capfd, "workspace", home=tmp_path)
    assert "20200101-000000-bbbb" in listed.stdout and "(the host)" in listed.stdout
    pruned = run_cli(
        capfd, "workspace", "--prune-runs-days", "30", "--owner", "session:ben", home=tmp_path
    )
    assert "deleted 1 run(s) trained more than 30 days ago" in pruned.stdout
    left = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    assert left[0] == "20200101-000000-bbbb" and left[1].endswith("-cccc") and len(left) == 2
    # Caches nothing wrote for the days given go; recent ones stay.
    stale = tmp_path / "features" / "old-namespace"
    stale.mkdir(parents=True)
    (stale / "rows.bin").write_bytes(bytes(2**20))
    for path in (stale, stale / "rows.bin"):
        os.utime(path, (old, old))
    fresh = tmp_path / "scans" / "recent.json"
    fresh.parent.mkdir(parents=True)
    fresh.write_text("{}")
    cleaned = run_cli(capfd, "workspace", "--prune-caches-days", "30", home=tmp_path)
    assert "deleted 1 cache entries nothing wrote for 30 days (1.0 MB)" in cleaned.stdout
    assert not stale.exists() and fresh.exists()
    missing = run_cli(capfd, "workspace", "--delete", "nothing", home=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no uploaded dataset is named nothing (see `workspace`)"
