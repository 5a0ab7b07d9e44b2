"""The feature cache: ResNet50's pooled features of photos, by photo content and weights,
in one store per namespace (features/store.py: float16 rows in a few large files, read
memory-mapped), so a 100,000-photo dataset's features are read as one array."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_model.core import workspace
from flower_model.features.store import RowStore
from flower_model.model.backbone import FEATURE_DIM, INPUT_SIZE, PREPROCESSING

# float16 halves the cache; values this large would not survive it (random weights can make them).
FLOAT16_LIMIT = 60000.0

ABOUT_FILE = "about.json"
STORE_FOLDER = "rows"
# What caches written before the store held: one .npy file per photo in a folder named after
# its hash's first two characters, and copies of whole lists of photos. Read once, moved
# into the store, then removed.
OLD_PACKS_FOLDER = "packs"


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
    root: Path | None = None  # the feature cache's folder (None: the workspace's)


class FeatureCache:
    """Pooled features on disk by image content hash: one namespace's store."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.key = key
        self.folder = (root or workspace.features_dir()) / key
        self.store = RowStore(self.folder / STORE_FOLDER, FEATURE_DIM)

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

    def get_many(
        self, hashes: Sequence[str], dtype: np.dtype | type = np.float32
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (features, found mask) for many photos, as `dtype`; missing rows are zeros."""
        self._move_old_files()
        return self.store.read([_key(sha) for sha in hashes], dtype)

    def found(self, hashes: Sequence[str]) -> np.ndarray:
        """Return which photos the cache holds (their keys looked up; nothing read)."""
        self._move_old_files()
        segments, _ = self.store.locate([_key(sha) for sha in hashes])
        return segments >= 0

    def may_hold_all(self, hashes: Sequence[str]) -> bool:
        """Return whether every photo is in the cache (`get_many` also checks their rows)."""
        return bool(self.found(hashes).all())

    def get(self, sha256: str) -> np.ndarray | None:
        """Return the cached features of an image, or None if missing or damaged."""
        features, found = self.get_many([sha256])
        return features[0] if found[0] else None

    def put(self, sha256: str, vector: np.ndarray) -> np.ndarray:
        """Store an image's features; return them as a later `get` will."""
        return self.put_many([sha256], vector[None, :])[0]

    def put_many(self, hashes: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Store images' features (a photo already held keeps its row); return them as a
        later `get_many` will: float16 unless a row has values too large for it."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(hashes), FEATURE_DIM)
        keys = [_key(sha) for sha in hashes]
        small = np.all(np.abs(vectors) < FLOAT16_LIMIT, axis=1)
        stored = vectors.copy()
        for rows, dtype in ((small, np.float16), (~small, np.float32)):
            chosen = np.flatnonzero(rows)
            if len(chosen):
                values = vectors[chosen].astype(dtype)
                self.store.append([keys[i] for i in chosen], values)
                stored[chosen] = values.astype(np.float32)
        return stored

    def copy_into(self, other: FeatureCache, chunk: int = 8192) -> int:
        """Add every photo's features held here to `other` (which keeps what it holds);
        return how many photos were copied. Segment files are never copied as files: two
        stores' segments are numbered each on their own."""
        keys = self.store.keys()
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            rows, found = self.store.read(part)
            other.put_many(
                [key.hex() for key, ok in zip(part, found, strict=True) if ok], rows[found]
            )
        return len(keys)

    def count(self) -> int:
        """Return how many photos' features the namespace holds."""
        self._move_old_files()
        return len(self.store)

    def bytes_used(self) -> int:
        """Return the bytes the namespace's features take on disk."""
        return self.store.bytes_used()

    def _move_old_files(self) -> None:
        """Move a cache written before the store (one .npy file per photo) into it."""
        if not self.folder.is_dir():
            return
        old = [p for p in self.folder.iterdir() if p.is_dir() and len(p.name) == 2]
        if not old and not (self.folder / OLD_PACKS_FOLDER).exists():
            return
        shutil.rmtree(self.folder / OLD_PACKS_FOLDER, ignore_errors=True)
        for folder in old:
            files = sorted(folder.glob("*.npy"))
            rows = [(p.stem, _load_old(p)) for p in files]
            kept = [(sha, row) for sha, row in rows if row is not None]
            if kept:
                self.put_many([sha for sha, _ in kept], np.stack([row for _, row in kept]))
            shutil.rmtree(folder, ignore_errors=True)


def _key(sha256: str) -> bytes:
    """Return the store's key of a photo: its SHA-256's 32 bytes (any other text's digest)."""
    try:
        key = bytes.fromhex(sha256)
    except ValueError:
        key = b""
    return key if len(key) == 32 else hashlib.sha256(sha256.encode()).digest()


def _load_old(path: Path) -> np.ndarray | None:
    """Return an old cache file's features as float32, or None when damaged."""
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if values.shape != (FEATURE_DIM,) or not np.all(np.isfinite(values)):
        return None
    return values.astype(np.float32)


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
        count = FeatureCache(folder.name, root).count()
        precision = about.get("precision", "float32")
        infos.append(CacheInfo(folder.name, label, count, precision, root))
    return sorted(infos, key=lambda info: info.count, reverse=True)


@dataclass(frozen=True)
class FeatureSet:
    """Which of a dataset's photos one namespace (one weights, one arithmetic) holds."""

    info: CacheInfo
    found: np.ndarray  # one per photo asked for

    @property
    def label(self) -> str:
        """Return what made these features and how many of the photos have them."""
        return (
            f"{self.info.weights_label} weights, {self.info.precision} "
            f"({int(self.found.sum()):,} of {len(self.found):,} photos)"
        )

    @property
    def cache(self) -> FeatureCache:
        """Return the namespace's cache."""
        return FeatureCache(self.info.key, self.info.root)


def feature_sets(hashes: Sequence[str], root: Path | None = None) -> list[FeatureSet]:
    """Return every cache namespace holding features of some of these photos, fullest first
    (their keys looked up; no feature is read)."""
    sets = []
    for info in cache_infos(root):
        if info.count:
            found = FeatureCache(info.key, root).found(hashes)
            if found.any():
                sets.append(FeatureSet(info, found))
    return sorted(sets, key=lambda s: int(s.found.sum()), reverse=True)
