"""The runs' index: what a list of runs shows of each, kept in one small file beside them.

A page lists the runs on every rerun. A run's metadata holds its split and its held-out
predictions, megabytes for a 100,000-photo dataset, so a list of 100 runs is read from this
index instead: one summary per run, with the sizes and modification times of the run's
metadata and model it was made from. A run whose files changed, or that the index does not
know (a run saved by an older version, or copied in by hand), is read once and indexed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from flower_model.core import workspace
from flower_model.runs.metadata import RunMetadata

INDEX_FILE = ".index.json"  # a dot file: never taken for a run folder
INDEX_VERSION = 1

# (metadata.json's modification time in ns and size, model.keras's): a run as indexed.
Stamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class RunSummary:
    """What lists and comparisons show of a run, without its split or predictions."""

    run_id: str
    created: str
    accuracy: float
    loss: float
    mode: str
    weights_label: str
    transfer_learning: bool
    class_names: tuple[str, ...]
    epochs_completed: int
    learning_rate: float
    batch_size: int
    photos: int
    seconds: float
    head_only: bool
    owner: str = ""  # who trained it ("": the command line, or the host)

    @classmethod
    def of(cls, metadata: RunMetadata) -> RunSummary:
        """Return a run's summary from its metadata."""
        return cls(
            run_id=metadata.run_id,
            created=metadata.created,
            accuracy=metadata.evaluation.accuracy,
            loss=metadata.evaluation.loss,
            mode=metadata.config.mode,
            weights_label=metadata.weights.label,
            transfer_learning=metadata.weights.transfer_learning,
            class_names=metadata.class_names,
            epochs_completed=metadata.epochs_completed,
            learning_rate=metadata.config.learning_rate,
            batch_size=metadata.config.batch_size,
            photos=metadata.dataset.images,
            seconds=metadata.seconds,
            head_only=metadata.head_only,
            owner=metadata.owner,
        )

    @classmethod
    def from_json(cls, value: dict) -> RunSummary:
        """Rebuild a summary from the index; raise ValueError when it is not one."""
        names = {f.name for f in fields(cls)}
        if not isinstance(value, dict) or set(value) != names:
            raise ValueError("not a run summary")
        return cls(**{**value, "class_names": tuple(value["class_names"])})


@dataclass(frozen=True)
class Entry:
    """One run folder as indexed: a run's summary, or why the folder is not a usable run."""

    stamp: Stamp
    summary: RunSummary | None
    broken: str | None = None


def stamp_of(folder: Path, metadata_file: str, model_file: str) -> Stamp:
    """Return a run folder's stamp (zeros for a file that is missing)."""
    values: list[int] = []
    for name in (metadata_file, model_file):
        try:
            stat = os.stat(folder / name)
            values += [stat.st_mtime_ns, stat.st_size]
        except OSError:
            values += [0, 0]
    return (values[0], values[1], values[2], values[3])


def read_index(root: Path) -> dict[str, Entry]:
    """Return the index of the runs under `root` (empty when missing, damaged or older)."""
    try:
        value = json.loads((root / INDEX_FILE).read_text())
        if value.get("version") != INDEX_VERSION:
            return {}
        entries = {}
        for run_id, item in value["runs"].items():
            summary = item.get("summary")
            entries[run_id] = Entry(
                tuple(int(n) for n in item["stamp"]),  # type: ignore[arg-type]
                RunSummary.from_json(summary) if summary is not None else None,
                item.get("broken"),
            )
        return entries
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_index(root: Path, entries: dict[str, Entry]) -> None:
    """Write the index atomically; a full disk only means the runs are read again."""
    value = {
        "version": INDEX_VERSION,
        "runs": {
            run_id: {
                "stamp": list(entry.stamp),
                "summary": asdict(entry.summary) if entry.summary is not None else None,
                "broken": entry.broken,
            }
            for run_id, entry in sorted(entries.items())
        },
    }
    workspace.write_cache(root / INDEX_FILE, json.dumps(value), "the runs' index")
