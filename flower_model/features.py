"""ResNet50's pooled features of photos: computed once per photo, cached on disk by content."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model import workspace
from flower_model.backbone import FEATURE_DIM, INPUT_SIZE, PREPROCESSING, WeightsChoice
from flower_model.errors import TrainingCancelled

if TYPE_CHECKING:
    from flower_model.data import Dataset
    from flower_model.extractor import FeatureExtractor

# float16 halves the cache; values this large would not survive it (random weights can make them).
FLOAT16_LIMIT = 60000.0

# Standard deviations below this are taken as 1: a feature that never varies carries nothing.
MIN_FEATURE_STD = 1e-6

Progress = Callable[[int, int], None]
ABOUT_FILE = "about.json"
# A dataset's features read at once: one file per list of photos, beside the per-photo files.
# 4,317 photos: 0.33 s from their own files, a few milliseconds from the pack (measured).
PACKS_FOLDER = "packs"
PACK_SUFFIX = ".pack"
PACKS_KEPT = 4  # per namespace, the most recently written; each is about 4 KB a photo
PACK_MIN_PHOTOS = 100  # below this, the photos' own files are read about as fast


@dataclass(frozen=True)
class ExtractionStats:
    """How many features were asked for, read from the cache, and computed by ResNet50."""

    total: int
    cached: int
    computed: int
    seconds: float
    precision: str = "float32"  # what ResNet50 computed in


def cache_key(weights_identity: str, precision: str) -> str:
    """Return the cache namespace of one set of ResNet50 weights, arithmetic and preprocessing."""
    text = f"resnet50|{weights_identity}|{precision}|{INPUT_SIZE}|{PREPROCESSING}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheInfo:
    """One namespace of the feature cache: which weights made it and how many photos it holds."""

    key: str
    weights_label: str
    count: int
    precision: str = "float32"  # the arithmetic ResNet50 computed them in


class FeatureCache:
    """Pooled features on disk, one small .npy per image content hash; writes are atomic."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.key = key
        self.folder = (root or workspace.features_dir()) / key

    @classmethod
    def for_extractor(cls, extractor: FeatureExtractor, weights_label: str) -> FeatureCache:
        """Return the cache namespace of an extractor's weights and precision."""
        cache = cls(extractor.cache_key)
        cache.describe(weights_label, extractor.precision)
        return cache

    def describe(self, weights_label: str, precision: str) -> None:
        """Record which weights and arithmetic made this namespace, for pages without TensorFlow."""
        about = self.folder / ABOUT_FILE
        if not about.exists():
            text = json.dumps({"weights_label": weights_label, "precision": precision})
            workspace.write_atomic(about, text)

    def get_many(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (features, found mask) for many photos; missing rows are zeros.

        When every photo is found, the rows are also kept as one pack for this list of photos,
        which the next call for the same list reads at once.
        """
        packed = self._read_pack(hashes)
        if packed is not None:
            return packed, np.ones(len(hashes), dtype=bool)
        features = np.zeros((len(hashes), FEATURE_DIM), dtype=np.float32)
        found = np.zeros(len(hashes), dtype=bool)
        for i, sha in enumerate(hashes):
            vector = self.get(sha)
            if vector is not None:
                features[i], found[i] = vector, True
        if found.all() and len(hashes) >= PACK_MIN_PHOTOS:
            self._write_pack(hashes, features)
        return features, found

    def may_hold_all(self, hashes: Sequence[str]) -> bool:
        """Return whether every photo has a file here (a look at names; `get` checks them)."""
        if self._pack_path(hashes).exists():
            return True
        return all(self._path(sha).exists() for sha in hashes)

    def _pack_path(self, hashes: Sequence[str]) -> Path:
        digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:32]
        return self.folder / PACKS_FOLDER / f"{digest}{PACK_SUFFIX}"

    def _read_pack(self, hashes: Sequence[str]) -> np.ndarray | None:
        return _load_checked(self._pack_path(hashes), (len(hashes), FEATURE_DIM))

    def _write_pack(self, hashes: Sequence[str], features: np.ndarray) -> None:
        """Keep a list of photos' features as one file, and only the newest few packs."""
        path = self._pack_path(hashes)
        try:
            workspace.write_atomic(path, _encoded(features)[0])
        except OSError:
            return  # a full disk: the photos' own files still hold every feature
        packs = sorted(path.parent.glob(f"*{PACK_SUFFIX}"), key=_modified, reverse=True)
        for old in packs[PACKS_KEPT:]:
            old.unlink(missing_ok=True)

    def _path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str) -> np.ndarray | None:
        """Return the cached features of an image, or None if missing, stale or corrupt."""
        return _load_checked(self._path(sha256), (FEATURE_DIM,))

    def put(self, sha256: str, vector: np.ndarray) -> np.ndarray:
        """Store an image's features atomically; return them as a later `get` will."""
        data, stored = _encoded(vector)
        workspace.write_atomic(self._path(sha256), data)
        return stored

    def bytes_used(self) -> int:
        """Return the bytes the photos' own files take on disk (packs are copies of them)."""
        if not self.folder.exists():
            return 0
        return sum(p.stat().st_size for p in self.folder.rglob("*.npy"))


def _encoded(features: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Return features as stored (.npy bytes, in float16 unless a value is too large for it)
    and the float32 values they will be read back as."""
    small = np.all(np.abs(features) < FLOAT16_LIMIT)
    stored = features.astype(np.float16 if small else np.float32)
    buffer = io.BytesIO()
    np.save(buffer, stored, allow_pickle=False)
    return buffer.getvalue(), stored.astype(np.float32)


def _load_checked(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Return stored features as float32, or None if missing; a corrupt or stale file (not
    that shape, or not finite) is removed, for the caller to rebuild."""
    try:
        values = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        path.unlink(missing_ok=True)
        return None
    if values.shape != shape or not np.all(np.isfinite(values)):
        path.unlink(missing_ok=True)
        return None
    return values.astype(np.float32)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def extract_features(
    paths: Sequence[Path],
    hashes: Sequence[str],
    extractor: FeatureExtractor,
    cache: FeatureCache,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, ExtractionStats]:
    """Return features for every image, computing only those not in the cache."""
    from flower_model.pipeline import image_dataset

    start = time.perf_counter()
    found = {sha: vector for sha in set(hashes) if (vector := cache.get(sha)) is not None}
    todo: dict[str, Path] = {}
    for path, sha in zip(paths, hashes, strict=True):
        if sha not in found:
            todo.setdefault(sha, Path(path))
    total = len(set(hashes))
    if progress is not None:
        progress(len(found), total)
    if todo:
        shas = list(todo)
        batches = image_dataset([todo[s] for s in shas], batch_size=batch_size)
        done = 0
        for images in batches:
            if cancelled is not None and cancelled():
                raise TrainingCancelled("stopped while extracting features")
            vectors = extractor.run(images)
            for sha, vector in zip(shas[done : done + len(vectors)], vectors, strict=True):
                # Keep what the cache holds, so a first and a second run see the same numbers.
                found[sha] = cache.put(sha, vector)
            done += len(vectors)
            if progress is not None:
                progress(total - len(todo) + done, total)
    features = np.stack([found[sha] for sha in hashes]).astype(np.float32)
    stats = ExtractionStats(
        total=len(hashes),
        cached=len(hashes) - sum(1 for sha in hashes if sha in todo),
        computed=len(todo),
        seconds=time.perf_counter() - start,
        precision=extractor.precision,
    )
    return features, stats


def cache_infos(root: Path | None = None) -> list[CacheInfo]:
    """Return the feature-cache namespaces on disk, fullest first (reads no features)."""
    root = root or workspace.features_dir()
    infos = []
    for folder in root.iterdir() if root.is_dir() else []:
        try:
            about = json.loads((folder / ABOUT_FILE).read_text())
            label = about["weights_label"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        count = sum(1 for _ in folder.glob("*/*.npy"))
        infos.append(CacheInfo(folder.name, label, count, about.get("precision", "float32")))
    return sorted(infos, key=lambda info: info.count, reverse=True)


@dataclass(frozen=True)
class DatasetFeatures:
    """Every photo of a dataset's features, in the dataset's order, and what made them."""

    features: np.ndarray
    stats: ExtractionStats
    cache_key: str  # the cache namespace: one set of weights, one arithmetic
    weights_label: str
    transfer_learning: bool
    identity: str = ""  # the weights' `weights_identity`


def _known_cache(identity: str | None, precision: str) -> tuple[FeatureCache, str] | None:
    """Return the cache namespace a training would use and the arithmetic `precision`
    resolves to, when both are known without building ResNet50, else None."""
    from flower_model.precision import known_precision

    chosen = known_precision(precision, identity) if identity is not None else None
    if identity is None or chosen is None:
        return None
    return FeatureCache(cache_key(identity, chosen)), chosen


def _all_cached(
    hashes: Sequence[str], identity: str | None, precision: str
) -> tuple[np.ndarray, str, str] | None:
    """Return (features, precision, cache key) when every photo's features are in the cache
    of known weights at a known precision, else None: then ResNet50 is needed."""
    known = _known_cache(identity, precision)
    if known is None or not known[0].may_hold_all(hashes):  # then extraction reads them, once
        return None
    cache, chosen = known
    features, found = cache.get_many(hashes)
    return (features, chosen, cache.key) if found.all() else None


def needs_extraction(
    dataset: Dataset, weights: str = "imagenet", seed: int = 42, precision: str = "auto"
) -> bool:
    """Return whether a training with these weights would have to run ResNet50 on some of
    the dataset's photos (a look at file names; TensorFlow is not imported)."""
    from flower_model.backbone import known_identity, resolve_weights

    known = _known_cache(known_identity(resolve_weights(weights), seed), precision)
    return known is None or not known[0].may_hold_all([r.sha256 for r in dataset.records])


def dataset_features(
    dataset: Dataset,
    weights: str | WeightsChoice = "imagenet",
    seed: int = 42,
    precision: str = "auto",
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    batch_size: int = 32,
    on_phase: Callable[[str], None] | None = None,
) -> DatasetFeatures:
    """Return the features of every photo of a dataset, computing those not in the cache.

    When every photo's features are cached for weights built before, ResNet50 is not even
    built: what weights it would have is known from their source (`backbone.known_identity`).
    """
    from flower_model.backbone import build_resnet50, identity_of, known_identity, resolve_weights
    from flower_model.extractor import FeatureExtractor

    phase = on_phase or (lambda message: None)
    choice = weights if isinstance(weights, WeightsChoice) else resolve_weights(weights)
    paths = [dataset.path_of(r) for r in dataset.records]
    hashes = [r.sha256 for r in dataset.records]
    identity = known_identity(choice, seed)
    start = time.perf_counter()
    cached = _all_cached(hashes, identity, precision)
    if cached is not None:
        features, chosen, key = cached
        if progress is not None:
            progress(len(set(hashes)), len(set(hashes)))
        stats = ExtractionStats(len(hashes), len(hashes), 0, time.perf_counter() - start, chosen)
        return DatasetFeatures(
            features, stats, key, choice.label, choice.transfer_learning, identity
        )
    phase(f"loading ResNet50 (weights {choice.label})")
    resnet = build_resnet50(choice, seed=seed)
    identity = identity_of(resnet, choice, seed)
    phase("preparing ResNet50 for feature extraction")
    extractor = FeatureExtractor.create(resnet, precision, identity)
    phase(f"extracting features ({extractor.precision})")
    features, stats = extract_features(
        paths,
        hashes,
        extractor,
        FeatureCache.for_extractor(extractor, choice.label),
        batch_size=batch_size,
        progress=progress,
        cancelled=cancelled,
    )
    return DatasetFeatures(
        features, stats, extractor.cache_key, choice.label, choice.transfer_learning, identity
    )


@dataclass(frozen=True)
class FeatureSet:
    """Cached features of a dataset's photos from one namespace (one weights, one arithmetic)."""

    info: CacheInfo
    features: np.ndarray  # one row per photo asked for; zeros where not cached
    found: np.ndarray  # which rows were cached

    @property
    def label(self) -> str:
        """Return what made these features and how many of the photos have them."""
        return (
            f"{self.info.weights_label} weights, {self.info.precision} "
            f"({int(self.found.sum()):,} of {len(self.found):,} photos)"
        )


def feature_sets(hashes: Sequence[str], root: Path | None = None) -> list[FeatureSet]:
    """Return every cache namespace holding features of some of these photos, fullest first."""
    sets = []
    for info in cache_infos(root):
        if info.count:
            features, found = FeatureCache(info.key, root).get_many(hashes)
            if found.any():
                sets.append(FeatureSet(info, features, found))
    return sorted(sets, key=lambda s: int(s.found.sum()), reverse=True)


def standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each feature's mean and standard deviation (1 where it does not vary)."""
    # Sums in float64 over float32 values: numpy's float64 `std` made two float64 copies of
    # the rows, twice the time (27 against 13 ms on 3,200 photos), for the same figures to 1e-7.
    rows = np.asarray(features, dtype=np.float32)  # float16 from the cache: converted once
    mean = rows.sum(axis=0, dtype=np.float64) / len(rows)
    centred = rows - mean.astype(np.float32)
    std = np.sqrt(np.einsum("ij,ij->j", centred, centred, dtype=np.float64) / len(features))
    return mean, np.where(std < MIN_FEATURE_STD, 1.0, std)


def standardised(features: np.ndarray) -> np.ndarray:
    """Return the features standardised: the geometry the head is trained in, where
    distances mean something even for random weights (whose raw features are all alike)."""
    mean, std = standardisation(features)
    return (np.asarray(features, dtype=np.float64) - mean) / std
