"""A dataset's audit: photos filed under the wrong class, duplicates (and the leaks they make
in a plain split), photos of none of the classes, a class much smaller than the others.

Every photo gets out-of-sample probabilities from the seed's head trained k-fold on the
cached ResNet50 features (no photo goes through ResNet50 twice), and cleanlab's Datalab finds
the issues from those probabilities and the features. An audit is kept per dataset, features
and settings, so it is read, not redone, the second time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flower_model.audit.near_duplicates import NEAR_DUPLICATE_THRESHOLD
from flower_model.core import workspace
from flower_model.core.errors import DatasetError, TrainingCancelled
from flower_model.core.events import CancelToken
from flower_model.data.dataset import Dataset, split_dataset
from flower_model.data.decisions import Wanted
from flower_model.data.groups import DuplicateGroup, duplicate_groups, with_leaks
from flower_model.model.config import TrainConfig, default_of

# Folds of the out-of-sample training: each photo is predicted by a head that never saw it.
FOLDS = 5
# Bump when an audit's file changes shape, so old files are not read.
AUDIT_VERSION = 1
KINDS = ("label", "outlier", "duplicate")
# Why a photo was decided about, as each kind of finding says it.
REASONS = {"label": "label issue", "outlier": "outlier"}

# What is being done, how much of it is done, out of how much.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PhotoFinding:
    """One photo that looks wrong: filed under the wrong class, or of none of the classes."""

    path: str
    kind: str  # "label" or "outlier"
    given: str  # the class it is filed under
    suggested: str  # the class the out-of-sample head gives it
    score: float  # 0–1, higher is more surely a problem (1 − cleanlab's quality score)
    probabilities: tuple[float, ...]  # out-of-sample, in class order


@dataclass(frozen=True)
class Audit:
    """What an audit of one dataset found, worst first in each kind."""

    fingerprint: str  # the dataset as scanned, before any decision
    cache_key: str  # the features it was computed on
    weights_label: str
    transfer_learning: bool  # False: random-weights features, findings not meaningful
    folds: int
    seed: int
    class_names: tuple[str, ...]
    photos: int
    accuracy: float  # of the out-of-sample probabilities against the given classes
    label_issues: tuple[PhotoFinding, ...]
    outliers: tuple[PhotoFinding, ...]
    duplicates: tuple[DuplicateGroup, ...]  # leak: cut by a plain stratified split
    small_classes: tuple[str, ...]  # classes cleanlab finds too small beside the others
    seconds: float
    created: str

    @property
    def leaks(self) -> tuple[DuplicateGroup, ...]:
        """Return the duplicate groups a plain split puts on both sides."""
        return tuple(g for g in self.duplicates if g.leak)

    def to_json(self) -> dict:
        """Return the audit as plain JSON values."""
        return {"version": AUDIT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, value: dict) -> Audit:
        """Rebuild an audit read from its file; raise ValueError if it is not one."""
        if value.get("version") != AUDIT_VERSION:
            raise ValueError(f"not an audit of version {AUDIT_VERSION}")

        def photos(items: list[dict]) -> tuple[PhotoFinding, ...]:
            return tuple(
                PhotoFinding(**{**item, "probabilities": tuple(item["probabilities"])})
                for item in items
            )

        try:
            return cls(
                **{
                    **{k: v for k, v in value.items() if k != "version"},
                    "class_names": tuple(value["class_names"]),
                    "label_issues": photos(value["label_issues"]),
                    "outliers": photos(value["outliers"]),
                    "duplicates": tuple(
                        DuplicateGroup(
                            tuple(g["paths"]), bool(g["exact"]), tuple(g["labels"]), bool(g["leak"])
                        )
                        for g in value["duplicates"]
                    ),
                    "small_classes": tuple(value["small_classes"]),
                }
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an audit ({exc!r})") from exc


def folds_for(labels: np.ndarray, num_classes: int, folds: int) -> int:
    """Return the folds an audit uses: as asked, fewer when a class has fewer photos."""
    if folds < 2:
        raise DatasetError(f"an audit needs at least 2 folds, not {folds}")
    smallest = int(np.bincount(labels, minlength=num_classes).min())
    if smallest < 2:
        raise DatasetError("each class needs at least two photos to be audited")
    return min(folds, smallest)


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = FOLDS,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Return every photo's class probabilities from a head that never trained on it: the
    seed's head, with a run's optimizer and settings, fitted on all folds but the photo's own.

    Unlike a run, nothing is held out inside a fold to stop early or pick the best epoch
    (the photos judged must decide nothing): each head trains all its epochs and keeps the
    epoch of lowest training loss.
    """
    from sklearn.model_selection import StratifiedKFold

    from flower_model.model.fitting import fit_head
    from flower_model.model.head import build_head
    from flower_model.model.scaling import Selection

    config = config or TrainConfig()
    cancel = cancel or CancelToken()
    folds = folds_for(labels, num_classes, folds)
    probabilities = np.zeros((len(labels), num_classes), dtype=np.float64)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=config.seed)
    for fold, (train, held) in enumerate(splitter.split(features, labels)):
        what = f"training fold {fold + 1} of {folds}"

        def on_event(event, fold: int = fold, what: str = what) -> None:
            if progress is not None and event.kind == "epoch":
                progress(what, fold * config.epochs + event.epoch, folds * config.epochs)

        head = build_head(num_classes, config.seed, config.dropout)
        try:
            part = (Selection(features, train), labels[train])  # read a block at a time
            fit_head(head, part, None, config, on_event, cancel)
        except TrainingCancelled:
            cancel.cancel()
        if cancel.is_set():
            raise TrainingCancelled("audit stopped; nothing was kept")
        # One call on the held-out rows: no predict function traced per fold's model.
        rows = np.asarray(features[held], dtype=np.float32)
        probabilities[held] = np.asarray(head(rows, training=False))
    return probabilities


def _photo_findings(
    kind: str,
    scores: np.ndarray,
    flagged: np.ndarray,
    paths: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
) -> tuple[PhotoFinding, ...]:
    """Return the flagged photos as findings, worst first (scores are cleanlab's quality)."""
    rows = np.flatnonzero(flagged)
    rows = rows[np.argsort(scores[rows], kind="stable")]
    return tuple(
        PhotoFinding(
            path=paths[i],
            kind=kind,
            given=class_names[labels[i]],
            suggested=class_names[int(probabilities[i].argmax())],
            score=round(1.0 - float(scores[i]), 6),
            probabilities=tuple(round(float(p), 4) for p in probabilities[i]),
        )
        for i in rows
    )


@dataclass(frozen=True)
class Findings:
    """What cleanlab and the content hashes find in one dataset's features."""

    label_issues: tuple[PhotoFinding, ...]
    outliers: tuple[PhotoFinding, ...]
    duplicates: tuple[DuplicateGroup, ...]
    small_classes: tuple[str, ...]


def find_problems(
    paths: Sequence[str],
    hashes: Sequence[str],
    labels: np.ndarray,
    class_names: Sequence[str],
    features: np.ndarray,
    probabilities: np.ndarray,
    pixels: Sequence[int] | None = None,
) -> Findings:
    """Return the label issues, outliers, duplicate groups and small classes of a dataset."""
    from flower_model.audit.datalab import find_issues

    lab = find_issues(
        features,
        {
            # One process: the app's worker is a daemon, which may not start others.
            "label": {"clean_learning_kwargs": {"find_label_issues_kwargs": {"n_jobs": 1}}},
            "outlier": {},
            "near_duplicate": {"threshold": NEAR_DUPLICATE_THRESHOLD},
            "class_imbalance": {},
        },
        labels=labels,
        pred_probs=probabilities,
    )
    issues = lab.issues
    names = list(class_names)

    def photos(kind: str) -> tuple[PhotoFinding, ...]:
        scores = issues[f"{kind}_score"].to_numpy()
        flagged = issues[f"is_{kind}_issue"].to_numpy()
        return _photo_findings(kind, scores, flagged, paths, labels, probabilities, names)

    near = lab.get_info("near_duplicate")["near_duplicate_sets"]
    groups = duplicate_groups(paths, hashes, [names[i] for i in labels], near, pixels)
    small = issues["is_class_imbalance_issue"].to_numpy()
    return Findings(
        label_issues=photos("label"),
        outliers=photos("outlier"),
        duplicates=groups,
        small_classes=tuple(sorted({names[labels[i]] for i in np.flatnonzero(small)})),
    )


def audit_file(fingerprint: str, cache_key: str, folds: int, seed: int) -> Path:
    """Return where the audit of a dataset on one set of features is kept."""
    return workspace.audits_dir() / f"{fingerprint}-{cache_key}-k{folds}-s{seed}.json"


def read_audit(path: Path) -> Audit | None:
    """Return the audit kept in a file, or None if there is none or it is unreadable."""
    try:
        return Audit.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def kept_audits(fingerprint: str) -> list[Audit]:
    """Return the audits kept for a dataset, newest first (reads no features, no TensorFlow)."""
    folder = workspace.audits_dir()
    found = [read_audit(p) for p in folder.glob(f"{fingerprint}-*.json")] if folder.is_dir() else []
    return sorted((a for a in found if a is not None), key=lambda a: a.created, reverse=True)


def audit_dataset(
    dataset: Dataset,
    weights: str = "imagenet",
    folds: int = FOLDS,
    seed: int = 42,
    precision: str = "auto",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    again: bool = False,
    on_phase: Callable[[str], None] | None = None,
) -> Audit:
    """Return the audit of a scanned dataset (as its folder is, before any decision), read
    from the workspace when it was done before on the same features, unless `again`."""
    from flower_model.features.extraction import dataset_features

    cancel = cancel or CancelToken()
    started = time.perf_counter()

    def extracting(done: int, total: int) -> None:
        if progress is not None:
            progress("extracting features", done, total)

    computed = dataset_features(
        dataset,
        weights,
        seed,
        precision,
        progress=extracting,
        cancelled=cancel.is_set,
        on_phase=on_phase,
        dtype=np.float16,  # as cached: half the memory; each fold's head takes a float32 copy
    )
    path = audit_file(dataset.fingerprint, computed.cache_key, folds, seed)
    if not again and (kept := read_audit(path)) is not None:
        return kept
    records = dataset.records
    labels = np.array([r.label for r in records], dtype=np.int64)
    config = TrainConfig(seed=seed)
    used = folds_for(labels, len(dataset.class_names), folds)
    probabilities = out_of_sample_probabilities(
        computed.features, labels, len(dataset.class_names), folds, config, progress, cancel
    )
    if progress is not None:
        progress("finding issues with cleanlab", 0, 1)
    paths = [r.path for r in records]
    findings = find_problems(
        paths,
        [r.sha256 for r in records],
        labels,
        dataset.class_names,
        computed.features,
        probabilities,
        [r.width * r.height for r in records],
    )
    plain = split_dataset(dataset, default_of("val_fraction"), seed)
    audit = Audit(
        fingerprint=dataset.fingerprint,
        cache_key=computed.cache_key,
        weights_label=computed.weights_label,
        transfer_learning=computed.transfer_learning,
        folds=used,
        seed=seed,
        class_names=dataset.class_names,
        photos=len(records),
        accuracy=float(np.mean(probabilities.argmax(axis=1) == labels)),
        label_issues=findings.label_issues,
        outliers=findings.outliers,
        duplicates=with_leaks(findings.duplicates, plain.train, plain.val),
        small_classes=findings.small_classes,
        seconds=round(time.perf_counter() - started, 2),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if cancel.is_set():
        raise TrainingCancelled("audit stopped; nothing was kept")
    workspace.write_atomic(path, json.dumps(audit.to_json()))
    if progress is not None:
        progress("finding issues with cleanlab", 1, 1)
    return audit


def check_kinds(kinds: Sequence[str]) -> None:
    """Raise DatasetError unless every kind is one an audit finds."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        named = ", ".join(sorted(unknown)) or "nothing"
        raise DatasetError(f"the kinds to apply are {', '.join(KINDS)}, not {named}")


def suggested_decisions(audit: Audit, kinds: Sequence[str] = KINDS) -> list[Wanted]:
    """Return what the audit suggests for the kinds asked for: relabel each label issue to
    the class suggested, leave out each outlier, and keep one photo of each duplicate group
    (none of a group filed under different classes: which class is right is unknown)."""
    check_kinds(kinds)
    wanted: dict[str, Wanted] = {}
    if "duplicate" in kinds:
        for group in audit.duplicates:
            wanted.update((w.path, w) for w in group_decisions(group))
    if "outlier" in kinds:
        wanted.update((f.path, exclusion(f)) for f in audit.outliers)
    if "label" in kinds:
        for f in audit.label_issues:
            if f.path not in wanted and f.suggested != f.given:
                wanted[f.path] = relabelling(f)
    return list(wanted.values())


def group_decisions(group: DuplicateGroup) -> list[Wanted]:
    """Return what keeps one photo of a duplicate group (the first: the one worth keeping),
    or none of it when its photos are filed under different classes (which is right is
    unknown)."""
    if group.conflicting:
        reason = "duplicate filed under different classes"
        return [Wanted(p, "exclude", reason=reason) for p in group.paths]
    return [Wanted(p, "exclude", reason="duplicate") for p in group.paths[1:]]


def exclusion(finding: PhotoFinding) -> Wanted:
    """Return the decision that leaves a finding's photo out."""
    return Wanted(finding.path, "exclude", reason=REASONS[finding.kind])


def relabelling(finding: PhotoFinding) -> Wanted:
    """Return the decision that counts a finding's photo under the class suggested."""
    return Wanted(finding.path, "relabel", finding.suggested, reason=REASONS[finding.kind])
