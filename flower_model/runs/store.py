"""The model store: each training run is a folder with the model, its metadata and its events.

A run is written into `runs/.partial-<id>/` and renamed to `runs/<id>/` only once the
model and metadata are complete, so a run that did not finish saving is never listed; nor
is a folder whose metadata is not a run's (metadata.py decides).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flower_model.core import workspace
from flower_model.core.errors import RunError
from flower_model.model.backbone import FEATURE_DIM, RESNET_NAME
from flower_model.model.head import HEAD_INPUT, OUTPUT_LAYER, classifier_around
from flower_model.runs.index import Entry, RunSummary, Stamp, read_index, stamp_of, write_index
from flower_model.runs.metadata import RunMetadata

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
EVENTS_FILE = "events.jsonl"
PARTIAL_PREFIX = ".partial-"
# In a partial run folder: the process writing it, so that another can tell it was abandoned.
OWNER_FILE = "owner.json"
# A partial folder without an owner (from before owners were recorded) untouched this long
# is abandoned.
ABANDONED_SECONDS = 3600.0
# What a saved classifier holds beyond its head: the frozen ResNet50's 23,587,712 float32
# weights (a run that saves its head alone rebuilds them instead).
RESNET50_BYTES = 23_587_712 * 4


@dataclass(frozen=True)
class RunInfo:
    """A saved run: its summary at hand (runs/index.py), its whole metadata read when asked."""

    run_id: str
    path: Path
    summary: RunSummary
    loaded: RunMetadata | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, run_id: str, path: Path, metadata: RunMetadata) -> RunInfo:
        """Return a run whose metadata is already read."""
        return cls(run_id, path, RunSummary.of(metadata), metadata)

    @property
    def metadata(self) -> RunMetadata:
        """Return the run's whole metadata (read once per change of its file); raise RunError
        when it can no longer be read."""
        if self.loaded is not None:
            return self.loaded
        found = _read(self.path)
        if isinstance(found, BrokenRun):
            raise RunError(f"run {self.run_id} is broken: {found.reason}")
        return found.metadata

    @property
    def class_names(self) -> tuple[str, ...]:
        """Return the class names in the model's output order."""
        return self.summary.class_names

    @property
    def accuracy(self) -> float:
        """Return the held-out accuracy."""
        return self.summary.accuracy

    @property
    def owner(self) -> str:
        """Return who trained the run ("": the command line, or the host)."""
        return self.summary.owner

    @property
    def trained_at(self) -> float:
        """Return when the run was trained (a time.time()), from its record, else from its
        folder's time."""
        try:
            return datetime.fromisoformat(self.summary.created).timestamp()
        except ValueError:
            return self.path.stat().st_mtime

    @property
    def weights_label(self) -> str:
        """Return 'ImageNet' or the no-transfer-learning label."""
        return self.summary.weights_label

    @property
    def transfer_learning(self) -> bool:
        """Return whether the run started from ImageNet weights."""
        return self.summary.transfer_learning

    @property
    def model_path(self) -> Path:
        """Return the path of the saved Keras model."""
        return self.path / MODEL_FILE

    @property
    def classifier_bytes(self) -> int:
        """Return about how many bytes the whole classifier takes as a Keras file."""
        size = self.model_path.stat().st_size if self.model_path.is_file() else 0
        return size + (RESNET50_BYTES if self.summary.head_only else 0)

    @property
    def history(self) -> dict[str, list[float]]:
        """Return per-epoch loss, accuracy, val_loss and val_accuracy."""
        return self.metadata.history

    def describe(self) -> str:
        """Return a one-line summary: id, accuracy, mode and weights."""
        return (
            f"{self.run_id} · accuracy {self.accuracy:.1%} · {self.summary.mode} · "
            f"{self.weights_label}"
        )


def new_run_id() -> str:
    """Return a run id that sorts by time: YYYYMMDD-HHMMSS-xxxx."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + secrets.token_hex(2)


class RunWriter:
    """Writes one run: events while it trains, then model and metadata, then the final rename."""

    def __init__(self, root: Path | None = None, run_id: str | None = None) -> None:
        self.root = root or workspace.runs_dir()
        self.run_id = run_id or new_run_id()
        self.partial = self.root / f"{PARTIAL_PREFIX}{self.run_id}"
        remove_abandoned(self.root)
        self.partial.mkdir(parents=True, exist_ok=False)
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        workspace.write_atomic(self.partial / OWNER_FILE, json.dumps(owner))
        self.final = self.root / self.run_id
        self.folder = self.partial  # where events go: the partial folder, then the saved one

    def log_event(self, event: dict) -> None:
        """Append one event to the run's event log (readable by other processes meanwhile)."""
        with (self.folder / EVENTS_FILE).open("a") as log:
            log.write(json.dumps(event) + "\n")

    def finish(self, model: keras.Model, metadata: RunMetadata) -> RunInfo:
        """Save the model and metadata and publish the run; return it."""
        model.save(self.partial / MODEL_FILE)
        text = json.dumps(metadata.to_json(), indent=1, allow_nan=False)
        workspace.write_atomic(self.partial / METADATA_FILE, text)
        (self.partial / OWNER_FILE).unlink(missing_ok=True)
        os.replace(self.partial, self.final)
        self.folder = self.final
        return RunInfo.of(self.run_id, self.final, metadata)

    def discard(self) -> None:
        """Remove a run that will not be saved."""
        shutil.rmtree(self.partial, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _abandoned(partial: Path, now: float) -> bool:
    """Return whether a partial run folder's writer is gone (killed, or its machine restarted)."""
    try:
        owner = json.loads((partial / OWNER_FILE).read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return now - partial.stat().st_mtime > ABANDONED_SECONDS
        except OSError:
            return False
    return host == socket.gethostname() and not _process_alive(pid)


def remove_abandoned(root: Path | None = None) -> list[Path]:
    """Remove the partial run folders of trainings whose process is gone (killed while it
    trained or saved); return them."""
    root = root or workspace.runs_dir()
    if not root.is_dir():
        return []
    now, removed = time.time(), []
    for path in root.iterdir():
        if path.name.startswith(PARTIAL_PREFIX) and path.is_dir() and _abandoned(path, now):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class BrokenRun:
    """A run folder that cannot be used, and why: listed, never loaded, never a default."""

    run_id: str
    path: Path
    reason: str


def _layer_configs(config: object) -> Iterator[dict]:
    """Yield every layer configuration nested anywhere in a Keras model's config.json."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _layer_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_configs(value)


def _model_problem(path: Path, class_names: tuple[str, ...], head_only: bool) -> str | None:
    """Return why a `.keras` file is not a Flower Lens classifier for these classes, or None.

    Reads only the archive's config.json (milliseconds): no code and no weights are loaded;
    and a file seen before, unchanged, is not read again (pages list the runs on every rerun).
    """
    try:
        stat = path.stat()
    except OSError:
        return f"no readable {MODEL_FILE}"
    return _checked_model(path, stat.st_size, stat.st_mtime_ns, class_names, head_only)


@functools.lru_cache(maxsize=4096)
def _checked_model(
    path: Path, size: int, mtime_ns: int, class_names: tuple[str, ...], head_only: bool
) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return f"{MODEL_FILE} is not a Keras model file"
    layers = list(_layer_configs(config))
    if any(layer.get("class_name") == "Lambda" for layer in layers):
        return f"{MODEL_FILE} holds a Lambda layer (Python code): refused"
    names = {str((layer.get("config") or {}).get("name")): layer for layer in layers}
    output = (names.get(OUTPUT_LAYER) or {}).get("config") or {}
    if head_only:
        shape = ((names.get(HEAD_INPUT) or {}).get("config") or {}).get("batch_shape") or [0]
        shaped = RESNET_NAME not in names and shape[-1] == FEATURE_DIM
    else:
        shaped = RESNET_NAME in names
    if not shaped or output.get("units") != len(class_names):
        what = "head" if head_only else "classifier"
        return f"{MODEL_FILE} is not a Flower Lens {what} of {len(class_names)} classes"
    return None


def _read(path: Path) -> RunInfo | BrokenRun:
    """Return a run folder as a run, or as a broken run with the reason (a folder read
    before and unchanged since is not read again)."""
    return _read_stamped(path, stamp_of(path, METADATA_FILE, MODEL_FILE))


@functools.lru_cache(maxsize=16)
def _read_stamped(path: Path, stamp: Stamp) -> RunInfo | BrokenRun:
    try:
        text = (path / METADATA_FILE).read_text()
    except OSError:
        return BrokenRun(path.name, path, f"no readable {METADATA_FILE}")
    try:
        value = json.loads(text)
    except ValueError:
        return BrokenRun(path.name, path, f"{METADATA_FILE}: not valid JSON (cut short?)")
    try:
        metadata = RunMetadata.from_json(value)
    except ValueError as exc:
        return BrokenRun(path.name, path, f"{METADATA_FILE}: {exc}")
    if not (path / MODEL_FILE).is_file():
        return BrokenRun(path.name, path, f"no {MODEL_FILE}")
    problem = _model_problem(path / MODEL_FILE, metadata.class_names, metadata.head_only)
    if problem is not None:
        return BrokenRun(path.name, path, problem)
    return RunInfo.of(path.name, path, metadata)


def scan_runs(root: Path | None = None) -> tuple[list[RunInfo], list[BrokenRun]]:
    """Return the saved runs and the broken run folders, each newest first.

    Runs still being written (`.partial-*`) are neither. The runs come from the index
    (runs/index.py); a run it does not know, or whose files changed, is read and indexed.
    """
    root = root or workspace.runs_dir()
    if not root.is_dir():
        return [], []
    index = read_index(root)
    entries: dict[str, Entry] = {}
    runs: list[RunInfo] = []
    broken: list[BrokenRun] = []
    for path in sorted(root.iterdir(), reverse=True):
        if path.name.startswith(".") or not path.is_dir():
            continue
        stamp = stamp_of(path, METADATA_FILE, MODEL_FILE)
        entry = index.get(path.name)
        if entry is None or entry.stamp != stamp:
            found = _read_stamped(path, stamp)
            entry = (
                Entry(stamp, found.summary)
                if isinstance(found, RunInfo)
                else Entry(stamp, None, found.reason)
            )
        entries[path.name] = entry
        if entry.summary is not None:
            runs.append(RunInfo(path.name, path, entry.summary))
        else:
            broken.append(BrokenRun(path.name, path, entry.broken or "unreadable"))
    if entries != index:
        write_index(root, entries)
    return runs, broken


def delete_run(run_id: str, owner: str | None = None, root: Path | None = None) -> None:
    """Delete a saved run (its whole id): with an `owner` (a visitor), only if they trained
    it (None: the host, who may delete any); raise RunError saying why not. The folder is
    renamed out of the listing first, so no one sees half a run."""
    root = root or workspace.runs_dir()
    folder = root / run_id
    if Path(run_id).name != run_id or run_id.startswith(".") or not folder.is_dir():
        raise RunError(f"no run is named {run_id!r}")
    if owner is not None:
        found = _read(folder)
        trained_by = found.owner if isinstance(found, RunInfo) else ""
        if trained_by != owner:
            raise RunError(f"only whoever trained run {run_id} may delete it")
    doomed = root / f".deleted-{run_id}-{secrets.token_hex(3)}"
    try:
        os.replace(folder, doomed)
    except OSError as exc:
        why = workspace.describe_failure(exc)
        raise RunError(f"run {run_id} could not be deleted: {why}") from exc
    shutil.rmtree(doomed, ignore_errors=True)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Return the completely saved, usable runs, newest first."""
    return scan_runs(root)[0]


def get_run(run_id: str = "latest", root: Path | None = None) -> RunInfo:
    """Return a run by id, by a unique id prefix, or 'latest'."""
    folder = (root or workspace.runs_dir()) / run_id
    if run_id not in ("", "latest") and Path(run_id).name == run_id and folder.is_dir():
        # A whole id: that folder alone (a scan parses every run's metadata, 2 ms each).
        found = _read(folder)
        if isinstance(found, BrokenRun):
            raise RunError(f"run {found.run_id} is broken: {found.reason}")
        return found
    runs, broken = scan_runs(root)
    named = [b for b in broken if run_id not in ("", "latest") and b.run_id.startswith(run_id)]
    if named and not any(info.run_id.startswith(run_id) for info in runs):
        raise RunError(f"run {named[0].run_id} is broken: {named[0].reason}")
    if not runs:
        raise RunError(
            "no trained model yet: train one first (python -m flower_model train --data DIR)"
        )
    if run_id in ("", "latest"):
        return runs[0]
    matches = [info for info in runs if info.run_id.startswith(run_id)]
    if len(matches) != 1:
        known = ", ".join(info.run_id for info in runs[:5])
        what = "no run" if not matches else f"{len(matches)} runs"
        raise RunError(f"{what} matches '{run_id}'; known runs: {known}")
    return matches[0]


def load_model(info: RunInfo) -> keras.Model:
    """Return a run's classifier: photos -> class probabilities.

    A run that saved its head alone gets the frozen ResNet50 rebuilt under it from the
    weights it was trained with, checked to be those very weights.
    """
    import keras

    try:
        # safe_mode: a model file may not bring code with it (Lambda layers are refused).
        model = keras.models.load_model(info.model_path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged file
        raise RunError(f"cannot load the model of run {info.run_id} ({exc})") from exc
    if not info.metadata.head_only:
        return model
    return classifier_around(_resnet_of(info), model).classifier


def _resnet_of(info: RunInfo) -> keras.Model:
    """Return the frozen ResNet50 a run was trained with, rebuilt; raise RunError (or
    WeightsError when ImageNet weights are missing) if this machine has other weights."""
    from flower_model.model.backbone import (
        WeightsChoice,
        build_resnet50,
        identity_of,
        known_identity,
        resolve_weights,
    )

    recorded = info.metadata.weights
    if recorded.kind == "none":
        choice = WeightsChoice("none")
    elif recorded.file and Path(recorded.file).is_file():
        choice = WeightsChoice("imagenet", Path(recorded.file))
    else:
        choice = resolve_weights("imagenet")
    seed = info.metadata.config.seed
    known = known_identity(choice, seed)
    if known is not None and known != recorded.identity:
        raise _other_weights(info)
    resnet = build_resnet50(choice, seed)
    if known is None and identity_of(resnet, choice, seed) != recorded.identity:
        raise _other_weights(info)
    return resnet


def _other_weights(info: RunInfo) -> RunError:
    return RunError(
        f"run {info.run_id} was trained on ResNet50 weights ({info.weights_label}, "
        f"identity {info.metadata.weights.identity}) that this machine does not have"
    )
