"""The feature cache: ResNet50's pooled features of photos on disk, one file per photo content
and weights, with packs that read a whole dataset at once."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_model.core import workspace
from flower_model.model.backbone import FEATURE_DIM, INPUT_SIZE, PREPROCESSING

# float16 halves the cache; values this large would not survive it (random weights can make them).
FLOAT16_LIMIT = 60000.0

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
    def described(cls, key: str, weights_label: str, precision: str) -> FeatureCache:
        """Return the cache namespace `key`, with what made it written beside it."""
        cache = cls(key)
        cache.describe(weights_label, precision)
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
