"""Classify photos with a loaded run: probabilities per class, in class order, and the top class."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import ImageError
from flower_model.data.images import IMAGE_SUFFIXES, load_rgb
from flower_model.features.cache import FeatureCache
from flower_model.features.compute import extract_features
from flower_model.metrics.calibration import CONFIDENT
from flower_model.model.backbone import INPUT_SIZE, photo_function
from flower_model.model.fold import fold_batch_norm
from flower_model.model.head import Networks, classifier_around, networks_of
from flower_model.runs.store import RunInfo, get_run, load_model

if TYPE_CHECKING:
    from flower_model.data.dataset import Dataset, ImageRecord


@dataclass(frozen=True)
class Prediction:
    """What the model says about one photo."""

    name: str
    class_names: tuple[str, ...]
    probabilities: tuple[float, ...]  # in class order, summing to 1
    threshold: float = CONFIDENT  # below this top probability: "not sure"

    @property
    def top_class(self) -> str:
        """Return the most probable class."""
        return self.class_names[int(np.argmax(self.probabilities))]

    @property
    def top_probability(self) -> float:
        """Return the probability of the most probable class."""
        return float(max(self.probabilities))

    @property
    def confident(self) -> bool:
        """Return whether the top class is probable enough to trust."""
        return self.top_probability >= self.threshold

    def scaled(self, temperature: float, threshold: float) -> Prediction:
        """Return the prediction with its logits divided by a temperature (calibrated), judged
        by the threshold chosen for such probabilities."""
        from flower_model.metrics.calibration import scaled

        row = scaled(np.asarray([self.probabilities]), temperature)[0]
        return replace(self, probabilities=tuple(float(p) for p in row), threshold=threshold)

    def ranked(self) -> list[tuple[str, float]]:
        """Return (class, probability) pairs, most probable first."""
        return sorted(zip(self.class_names, self.probabilities, strict=True), key=lambda p: -p[1])

    def to_json(self) -> dict:
        """Return the prediction as plain JSON values."""
        return {
            "file": self.name,
            "top_class": self.top_class,
            "top_probability": round(self.top_probability, 6),
            "confident": self.confident,
            "probabilities": {
                c: round(p, 6) for c, p in zip(self.class_names, self.probabilities, strict=True)
            },
        }


@dataclass(frozen=True)
class Failure:
    """A photo that could not be classified, and why."""

    name: str
    message: str

    def to_json(self) -> dict:
        """Return the failure as plain JSON values."""
        return {"file": self.name, "error": self.message}


Source = Path | tuple[str, bytes]


class Classifier:
    """A run's model, loaded once and compiled once, ready for photos."""

    def __init__(self, networks: Networks, class_names: Sequence[str], run: RunInfo | None = None):
        self.networks = networks
        self.class_names = tuple(class_names)
        self.run = run
        calibration = run.metadata.calibration if run is not None else None
        found = calibration.threshold if calibration is not None else None
        self.threshold = found.threshold if found is not None else CONFIDENT
        # Photos go through a copy with BatchNorm folded into the convolutions: the saved
        # model's probabilities (tested to 1e-5), sooner (fold.py); Grad-CAM uses `networks`.
        # Built per arithmetic on first use: float32 for photos, bfloat16 for a live stream on
        # a device that computes it natively (as the run's held-out photos were measured).
        self._servings: dict[str, Callable] = {}
        self._building = threading.Lock()
        self._serving("float32")

    def _serving(self, precision: str) -> Callable:
        with self._building:
            if precision not in self._servings:
                import tensorflow as tf

                networks = self.networks
                folded = fold_batch_norm(networks.resnet, dtype=precision)
                serving = classifier_around(folded, networks.head).classifier
                self._servings[precision] = photo_function(
                    lambda images: tf.cast(serving(images, training=False), tf.float32)
                )
            return self._servings[precision]

    @classmethod
    def load(cls, run_id: str = "latest") -> Classifier:
        """Return the classifier of a saved run ('latest' by default)."""
        info = get_run(run_id)
        return cls(networks_of(load_model(info)), info.class_names, info)

    def probabilities(self, images: np.ndarray, precision: str = "float32") -> np.ndarray:
        """Return class probabilities for a uint8 batch of 224×224 RGB images, computed in
        float32 (the saved model's arithmetic) or bfloat16."""
        return self._serving(precision)(images).numpy()

    @property
    def fast_precision(self) -> str:
        """Return the quicker arithmetic that is true to this run: bfloat16 where the device
        computes it natively and the run's held-out photos were measured in it, else float32."""
        from flower_model.model.precision import device_has_bf16

        measured = self.run.metadata.measured_precision if self.run is not None else "float32"
        return "bfloat16" if measured == "bfloat16" and device_has_bf16() else "float32"

    def classify_one(self, source: Source) -> Prediction:
        """Return the prediction for one photo; raise ImageError if it cannot be read."""
        return self.classify_image(*_load(source))

    def classify_image(self, name: str, image: np.ndarray) -> Prediction:
        """Return the prediction for one photo already loaded at 224×224 (`load_rgb(size=224)`);
        raise ImageError if the model gives no valid probabilities for it."""
        result = self._prediction(name, self.probabilities(image[np.newaxis])[0])
        if isinstance(result, Failure):
            raise ImageError(result.message)
        return result

    def classify(
        self, sources: Sequence[Source | Failure], batch_size: int = 16
    ) -> list[Prediction | Failure]:
        """Return one result per photo, in order: a bad photo gives a Failure, not an exception."""
        return list(self.classify_stream(sources, batch_size))

    def classify_stream(
        self, sources: Iterable[Source | Failure], batch_size: int = 16
    ) -> Iterator[Prediction | Failure]:
        """Yield one result per photo, in order, holding at most one batch of photos in memory.

        A Failure among the sources (a file skipped before loading) is passed through.
        """
        for chunk in _batched(sources, batch_size):
            results: list[Prediction | Failure | None] = []
            loaded: list[tuple[int, str, np.ndarray]] = []
            for source in chunk:
                if isinstance(source, Failure):
                    results.append(source)
                    continue
                try:
                    name, image = _load(source)
                except ImageError as exc:
                    results.append(Failure(_name(source), str(exc)))
                    continue
                loaded.append((len(results), name, image))
                results.append(None)
            if loaded:
                rows = self.probabilities(np.stack([image for _, _, image in loaded]))
                for (i, name, _), row in zip(loaded, rows, strict=True):
                    results[i] = self._prediction(name, row)
            yield from (r for r in results if r is not None)

    def _prediction(self, name: str, row: np.ndarray) -> Prediction | Failure:
        probabilities = row.astype(np.float64)
        if not np.all(np.isfinite(probabilities)):
            return Failure(name, f"{name}: the model gave no valid probabilities (not finite)")
        row = tuple(float(p) for p in probabilities)
        return Prediction(name, self.class_names, row, self.threshold)

    def probabilities_of_records(
        self,
        dataset: Dataset,
        records: Sequence[ImageRecord],
        progress: Callable[[int, int], None] | None = None,
        precision: str = "auto",
    ) -> np.ndarray:
        """Return probabilities for dataset photos, through the feature cache of this ResNet50."""
        from flower_model.features.extractor import FeatureExtractor

        extractor = FeatureExtractor.create(self.networks.resnet, precision)
        features, _ = extract_features(
            [dataset.path_of(r) for r in records],
            [r.sha256 for r in records],
            extractor,
            FeatureCache(extractor.cache_key),
            progress=progress,
        )
        return self.networks.head.predict(features, verbose=0)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    """Yield lists of `size` items (the last may be shorter); Python 3.12's itertools.batched."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def photos_in(paths: Iterable[Path]) -> Iterator[Path | Failure]:
    """Yield the photos named: files as given, folders searched recursively in name order
    (hidden entries and files of other types are yielded as Failures with the reason)."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if found.is_dir():
                    continue
                if found.suffix.lower() in IMAGE_SUFFIXES:
                    yield found
                else:
                    kind = found.suffix.lower() or "no extension"
                    yield Failure(str(found), f"{found}: not an image file type ({kind})")
        elif path.exists():
            yield path
        else:
            yield Failure(str(path), f"{path}: no such file or folder")


def _name(source: Source) -> str:
    return source[0] if isinstance(source, tuple) else Path(source).name


def _load(source: Source) -> tuple[str, np.ndarray]:
    if isinstance(source, tuple):
        name, data = source
        return name, load_rgb(data, size=INPUT_SIZE, name=name)
    path = Path(source)
    return path.name, load_rgb(path, size=INPUT_SIZE)
