"""What a person decided about a dataset's photos: which to leave out and which belong to
another class. Kept in the workspace, one file per dataset folder and person (the photo folder
is never touched), and applied to a scanned dataset before training.

Decisions belong to whoever made them (`owner`: an account, or a browser session): a training
uses its own person's, never silently someone else's, and nobody undoes another's. The
dataset owner's decisions are *published*: an uploaded dataset's uploader's, any other
folder's own (owner "": the command line's, the host's). A visitor may choose to train with
them too.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from flower_model.core import workspace
from flower_model.core.errors import DatasetError
from flower_model.data import owners
from flower_model.data.dataset import Dataset, content_fingerprint

ACTIONS = ("exclude", "relabel")
# One writer at a time per server: two visitors deciding at once both keep their decision.
_WRITING = threading.Lock()


@dataclass(frozen=True)
class Decision:
    """Leave one photo out, or count it under another class."""

    path: str  # relative to the dataset folder
    sha256: str  # the photo decided on: if the file changes, the decision no longer applies
    action: str  # "exclude" or "relabel"
    label: str | None = None  # relabel: the class the photo is counted under
    reason: str = ""  # what prompted it, e.g. "label issue"


@dataclass(frozen=True)
class Decisions:
    """Every decision about one dataset folder, newest last."""

    root: str
    items: tuple[Decision, ...] = ()
    owner: str = ""  # who made them; "": the folder's own (the command line's, the host's)

    def of(self, path: str) -> Decision | None:
        """Return the decision about a photo, if any."""
        return next((d for d in self.items if d.path == path), None)

    def to_json(self) -> dict:
        """Return the decisions as plain JSON values."""
        return {"root": self.root, "owner": self.owner, "items": [asdict(d) for d in self.items]}

    @classmethod
    def from_json(cls, value: dict) -> Decisions:
        """Rebuild decisions read from their file."""
        items = tuple(Decision(**item) for item in value["items"])
        return cls(str(value["root"]), items, str(value.get("owner") or ""))


def decisions_file(root: Path, owner: str = "") -> Path:
    """Return the file holding one person's decisions about a dataset folder (the folder's
    own: owner "")."""
    name = str(Path(root).resolve()) + (f"\0{owner}" if owner else "")
    key = hashlib.sha256(name.encode()).hexdigest()[:16]
    return workspace.decisions_dir() / f"{key}.json"


def load_decisions(root: Path, owner: str = "") -> Decisions:
    """Return one person's decisions about a dataset folder (none yet: an empty list)."""
    path = decisions_file(root, owner)
    try:
        return Decisions.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return Decisions(str(Path(root).resolve()), owner=owner)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"the decisions about {root} cannot be read from {path} ({exc}); "
            "delete that file to start over"
        ) from exc


def _save(decisions: Decisions) -> None:
    path = decisions_file(Path(decisions.root), decisions.owner)
    workspace.write_atomic(path, json.dumps(decisions.to_json(), indent=1))


@dataclass(frozen=True)
class Wanted:
    """A decision asked for, before it is checked against the dataset."""

    path: str
    action: str
    label: str | None = None
    reason: str = ""


def _checked(dataset: Dataset, wanted: Wanted) -> Decision:
    """Return the decision to record, or raise DatasetError saying why it cannot be."""
    if wanted.action not in ACTIONS:
        raise DatasetError(f"a decision is one of {', '.join(ACTIONS)}, not '{wanted.action}'")
    record = next((r for r in dataset.records if r.path == wanted.path), None)
    if record is None:
        raise DatasetError(f"{wanted.path} is not a usable photo of {dataset.root}")
    label = None
    if wanted.action == "relabel":
        label = wanted.label
        if label not in dataset.class_names:
            raise DatasetError(
                f"'{label}' is not a class of this dataset ({', '.join(dataset.class_names)})"
            )
        if label == dataset.class_names[record.label]:
            raise DatasetError(f"{wanted.path} is already filed under '{label}'")
    return Decision(wanted.path, record.sha256, wanted.action, label, wanted.reason)


def decide_all(dataset: Dataset, wanted: Sequence[Wanted], owner: str = "") -> Decisions:
    """Record `owner`'s decisions about photos of a scanned dataset, each replacing any
    earlier one of theirs about its photo; return all their decisions about the folder. One
    bad decision records none."""
    new = [_checked(dataset, item) for item in wanted]
    paths = {d.path for d in new}
    with _WRITING:
        current = load_decisions(dataset.root, owner)
        kept = tuple(d for d in current.items if d.path not in paths)
        decisions = replace(current, items=(*kept, *new))
        _save(decisions)
    return decisions


def decide(
    dataset: Dataset,
    path: str,
    action: str,
    label: str | None = None,
    reason: str = "",
    owner: str = "",
) -> Decisions:
    """Record a decision about one photo (see decide_all)."""
    return decide_all(dataset, [Wanted(path, action, label, reason)], owner)


def undo_all(dataset: Dataset, owner: str = "") -> Decisions:
    """Forget every decision of `owner`'s about the folder (no one else's); return the
    (empty) decisions."""
    with _WRITING:
        decisions = Decisions(str(dataset.root.resolve()), owner=owner)
        _save(decisions)
    return decisions


def undo(dataset: Dataset, *paths: str, owner: str = "") -> Decisions:
    """Forget `owner`'s decisions about these photos; return all theirs left about the
    folder."""
    with _WRITING:
        current = load_decisions(dataset.root, owner)
        decisions = replace(current, items=tuple(d for d in current.items if d.path not in paths))
        _save(decisions)
    return decisions


def in_force(dataset: Dataset, decisions: Decisions) -> dict[str, Decision]:
    """Return the decisions that apply to a scanned dataset, by photo: not those about a
    photo that is gone or whose bytes changed, nor a relabel to a class it lacks."""
    by_path = {r.path: r for r in dataset.records}
    return {
        d.path: d
        for d in decisions.items
        if d.path in by_path
        and by_path[d.path].sha256 == d.sha256
        and (d.action == "exclude" or d.label in dataset.class_names)
    }


def apply_decisions(dataset: Dataset, decisions: Decisions) -> Dataset:
    """Return the dataset as decided: excluded photos left out, relabelled ones counted under
    their new class (only the decisions `in_force`)."""
    current = in_force(dataset, decisions).values()
    excluded = {d.path for d in current if d.action == "exclude"}
    relabelled = {d.path: d.label for d in current if d.action == "relabel"}
    if not excluded and not relabelled:
        return dataset
    index = {name: i for i, name in enumerate(dataset.class_names)}
    records = tuple(
        replace(r, label=index[relabelled[r.path]]) if r.path in relabelled else r
        for r in dataset.records
        if r.path not in excluded
    )
    return replace(
        dataset,
        records=records,
        fingerprint=content_fingerprint(dataset.class_names, records),
        excluded=tuple(sorted(excluded)),
        relabelled=tuple(sorted(relabelled.items())),
    )


def forget_under(folder: Path) -> int:
    """Delete the decisions about dataset folders inside `folder` (a deleted upload's), so a
    new dataset at the same place starts with none; return how many files went."""
    folder = Path(folder).resolve()
    gone = 0
    for path in workspace.decisions_dir().glob("*.json"):
        try:
            root = Path(json.loads(path.read_text())["root"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if root.is_relative_to(folder):
            path.unlink(missing_ok=True)
            gone += 1
    return gone


def publisher(root: Path) -> str:
    """Return whose decisions about a folder are published: an uploaded dataset's uploader,
    else the folder's own ("")."""
    return owners.ownership_of(root).owner if owners.is_upload(root) else ""


def published_decisions(root: Path, owner: str) -> Decisions:
    """Return the decisions published about a folder that are not `owner`'s own."""
    by = publisher(root)
    return (
        Decisions(str(Path(root).resolve()), owner=by) if by == owner else load_decisions(root, by)
    )


def decided(dataset: Dataset, owner: str = "", published: bool = False) -> Dataset:
    """Return a scanned dataset with `owner`'s decisions about its folder applied; with
    `published`, the dataset owner's published ones too, `owner`'s replacing them photo by
    photo."""
    mine = load_decisions(dataset.root, owner)
    if published:
        paths = {d.path for d in mine.items}
        others = published_decisions(dataset.root, owner).items
        mine = replace(mine, items=(*(d for d in others if d.path not in paths), *mine.items))
    return apply_decisions(dataset, mine)


def as_recorded(dataset: Dataset, excluded: tuple[str, ...], relabelled: dict[str, str]) -> Dataset:
    """Return a dataset with the decisions a run recorded applied, whatever is decided now."""
    by_path = {r.path: r for r in dataset.records}
    items = [Decision(p, by_path[p].sha256, "exclude") for p in excluded if p in by_path]
    items += [
        Decision(p, by_path[p].sha256, "relabel", label)
        for p, label in relabelled.items()
        if p in by_path
    ]
    return apply_decisions(dataset, Decisions(str(dataset.root), tuple(items)))
