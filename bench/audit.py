"""The audit's time on cached features: the library's `audit_dataset`, every feature already
in the workspace cache, so that no photo goes through ResNet50."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flower_model.audit.findings import FOLDS, audit_dataset
from flower_model.data.dataset import scan_dataset
from flower_model.features.cache import FeatureCache


@dataclass(frozen=True)
class AuditTiming:
    """One audit of the benchmark's photos, all features cached, timed by its phases."""

    photos: int
    folds: int
    seconds: float  # the whole audit_dataset call
    features_seconds: float  # reading the cache (ResNet50 is not built when it holds them all)
    folds_seconds: float  # the k heads trained and their held-out folds predicted
    cleanlab_seconds: float  # cleanlab's issues, the duplicate groups, the plain split
    accuracy: float  # out of sample
    label_issues: int
    outliers: int
    duplicate_groups: int


def seed_workspace_cache(source: Path, cache: FeatureCache) -> None:
    """Copy features the growth series computed into the workspace's cache namespace."""
    FeatureCache(source.name, source.parent).copy_into(cache)


def measure_audit(folder: Path, weights: str, precision: str, folds: int = FOLDS) -> AuditTiming:
    """Return the audit's time on the photos of `folder`, whose features must all be cached
    (it raises otherwise: that would time ResNet50, not the audit)."""
    dataset = scan_dataset(folder)
    marks: dict[str, float] = {}
    computed: list[int] = []

    def progress(what: str, done: int, total: int) -> None:
        phase = what.split(" ")[0]  # extracting, training, finding
        marks.setdefault(phase, time.perf_counter())
        if phase == "extracting" and done < total:
            computed.append(total - done)

    start = time.perf_counter()
    audit = audit_dataset(
        dataset, weights, folds, precision=precision, progress=progress, again=True
    )
    end = time.perf_counter()
    if computed:
        raise RuntimeError(f"{max(computed)} photos had no cached features: not an audit's time")
    return AuditTiming(
        photos=audit.photos,
        folds=audit.folds,
        seconds=end - start,
        features_seconds=marks["training"] - start,
        folds_seconds=marks["finding"] - marks["training"],
        cleanlab_seconds=end - marks["finding"],
        accuracy=audit.accuracy,
        label_issues=len(audit.label_issues),
        outliers=len(audit.outliers),
        duplicate_groups=len(audit.duplicates),
    )
