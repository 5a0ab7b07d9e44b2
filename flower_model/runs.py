"""The model store: each training run is a folder with the model, its metadata and its events.

A run is written into `runs/.partial-<id>/` and renamed to `runs/<id>/` only once the
model and metadata are complete, so a run that did not finish saving is never listed; nor
is a folder whose metadata is not a run's (metadata.py decides).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flower_model import workspace
from flower_model.errors import RunError
from flower_model.metadata import RunMetadata

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
EVENTS_FILE = "events.jsonl"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class RunInfo:
    """A saved run, as its metadata describes it."""

    run_id: str
    path: Path
    metadata: RunMetadata

    @property
    def class_names(self) -> tuple[str, ...]:
        """Return the class names in the model's output order."""
        return self.metadata.class_names

    @property
    def accuracy(self) -> float:
        """Return the held-out accuracy."""
        return self.metadata.accuracy

    @property
    def weights_label(self) -> str:
        """Return 'ImageNet' or the no-transfer-learning label."""
        return self.metadata.weights.label

    @property
    def transfer_learning(self) -> bool:
        """Return whether the run started from ImageNet weights."""
        return self.metadata.weights.transfer_learning

    @property
    def model_path(self) -> Path:
        """Return the path of the saved Keras model."""
        return self.path / MODEL_FILE

    @property
    def history(self) -> dict[str, list[float]]:
        """Return per-epoch loss, accuracy, val_loss and val_accuracy."""
        return self.metadata.history

    def describe(self) -> str:
        """Return a one-line summary: id, accuracy, mode and weights."""
        return (
            f"{self.run_id} · accuracy {self.accuracy:.1%} · {self.metadata.config.mode} · "
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
        self.partial.mkdir(parents=True, exist_ok=False)
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
        os.replace(self.partial, self.final)
        self.folder = self.final
        return RunInfo(self.run_id, self.final, metadata)

    def discard(self) -> None:
        """Remove a run that will not be saved."""
        shutil.rmtree(self.partial, ignore_errors=True)


def _read(path: Path) -> RunInfo | None:
    try:
        metadata = RunMetadata.from_json(json.loads((path / METADATA_FILE).read_text()))
    except (OSError, ValueError):
        return None
    if not (path / MODEL_FILE).is_file():
        return None
    return RunInfo(path.name, path, metadata)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Return the completely saved runs, newest first."""
    root = root or workspace.runs_dir()
    if not root.is_dir():
        return []
    runs = [
        info
        for path in root.iterdir()
        if path.is_dir() and not path.name.startswith(".") and (info := _read(path))
    ]
    return sorted(runs, key=lambda info: info.run_id, reverse=True)


def get_run(run_id: str = "latest", root: Path | None = None) -> RunInfo:
    """Return a run by id, by a unique id prefix, or 'latest'."""
    runs = list_runs(root)
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
    """Return the Keras model saved with a run."""
    import keras

    try:
        return keras.models.load_model(info.model_path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged file
        raise RunError(f"cannot load the model of run {info.run_id} ({exc})") from exc
