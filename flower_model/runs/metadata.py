"""A run's metadata, typed: what was trained, on which photos, how, and how well.

Stored as `metadata.json` beside the model. `to_json` writes the same keys runs have always
had, and `from_json` reads runs of earlier versions too (fields they lack get their
defaults); anything else that is not a run's metadata raises ValueError.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from flower_model import __version__
from flower_model.core.events import HISTORY_KEYS
from flower_model.data.dataset import Dataset, Split
from flower_model.features.cache import ExtractionStats
from flower_model.metrics.calibration import Calibration
from flower_model.metrics.evaluate import Evaluation
from flower_model.model.backbone import WeightsChoice
from flower_model.model.config import TrainConfig
from flower_model.model.search import Scores


def _known(cls: type, value: dict) -> dict:
    """Return the keys of `value` that are fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in value.items() if k in names}


@dataclass(frozen=True)
class WeightsInfo:
    """The ResNet50 weights a run started from."""

    kind: str  # "imagenet" or "none"
    label: str  # "ImageNet" or the no-transfer-learning label
    transfer_learning: bool
    file: str | None  # the weights file, when one was used
    identity: str  # hash of the weight values: the feature-cache key is made of it

    @classmethod
    def of(cls, choice: WeightsChoice, identity: str) -> WeightsInfo:
        """Return what a run records of its weights."""
        path = str(choice.path) if choice.path else None
        return cls(choice.kind, choice.label, choice.transfer_learning, path, identity)


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a run was trained on, as it was when scanned."""

    root: str
    fingerprint: str
    images: int
    classes: dict[str, int]  # usable photos per class, in class order
    skipped: int
    # The decisions the run was trained with: photos left out, and photos counted under
    # another class than their folder's (photo -> class).
    excluded: tuple[str, ...] = ()
    relabelled: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetInfo:
        """Return what a run records of its dataset."""
        return cls(
            root=str(dataset.root.resolve()),  # a run is used from other folders too
            fingerprint=dataset.fingerprint,
            images=len(dataset.records),
            classes=dataset.counts(),
            skipped=len(dataset.skipped),
            excluded=dataset.excluded,
            relabelled=dict(dataset.relabelled),
        )

    @classmethod
    def from_json(cls, value: dict) -> DatasetInfo:
        """Rebuild what a run recorded of its dataset (older runs recorded no decisions)."""
        known = _known(cls, value)
        known["excluded"] = tuple(known.get("excluded", ()))
        known["relabelled"] = dict(known.get("relabelled") or {})
        return cls(**known)


def versions() -> dict[str, str]:
    """Return the versions of what trained a run: this library, Python and its libraries."""
    import keras
    import numpy as np
    import PIL
    import tensorflow as tf

    return {
        "flower_lens": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


@dataclass(frozen=True)
class RunMetadata:
    """Everything a run records beside its model."""

    run_id: str
    created: str  # ISO 8601, local time
    seconds: float  # the whole training, saving excluded
    class_names: tuple[str, ...]  # the model's output order
    input_size: tuple[int, int, int]
    preprocessing: str
    weights: WeightsInfo
    config: TrainConfig  # with the learning rate that was used
    dataset: DatasetInfo
    split: Split
    features: ExtractionStats | None  # how the head's features were had (None: older fine-tunes)
    history: dict[str, list[float]]  # per completed epoch
    epochs_completed: int
    best_epoch: int  # 1-based: the epoch whose weights were saved
    stopped: str  # "all epochs", "early stopping" or "stopped by the user"
    evaluation: Evaluation  # on the validation split, with the saved weights
    versions: dict[str, str]
    # Whether the head trained on standardised features (folded into its first layer on saving).
    standardised_features: bool = False
    # Fine-tuned runs: the epochs of the head alone, before ResNet50's last stage trained too.
    fine_tuned_after: int | None = None
    # How far the held-out probabilities can be trusted (older runs: None).
    calibration: Calibration | None = None
    # Whether model.keras holds the head alone (features -> probabilities): the frozen
    # ResNet50 is rebuilt from `weights` when the run is loaded, instead of stored per run.
    head_only: bool = False
    # The head's k-fold cross-validated accuracy on the training photos, when asked for.
    cross_validation: Scores | None = None
    # Who trained it on a shared server (an account, or a browser session); "": the command
    # line, or the server's host.
    owner: str = ""

    @property
    def accuracy(self) -> float:
        """Return the held-out accuracy."""
        return self.evaluation.accuracy

    @property
    def measured_precision(self) -> str:
        """Return the arithmetic the held-out photos were measured in, so that evaluating
        again gives the same numbers: the features' for a head on features, else float32."""
        fine_tuned = self.config.mode == "finetune"
        return "float32" if fine_tuned or self.features is None else self.features.precision

    def to_json(self) -> dict[str, Any]:
        """Return the metadata as plain JSON values, as `metadata.json` holds them."""
        value = asdict(self)
        value["class_names"] = list(self.class_names)
        value["input_size"] = list(self.input_size)
        value["split"] = self.split.to_json()
        value["evaluation"] = self.evaluation.to_json()
        value["calibration"] = self.calibration.to_json() if self.calibration else None
        value["cross_validation"] = (
            self.cross_validation.to_json() if self.cross_validation else None
        )
        return value

    @classmethod
    def from_json(cls, value: Any) -> RunMetadata:
        """Rebuild metadata read from `metadata.json`; raise ValueError if it is not one."""
        if not isinstance(value, dict):
            raise ValueError(f"run metadata must be a JSON object, not {type(value).__name__}")
        try:
            features = value.get("features")
            history = value.get("history") or {}
            return cls(
                run_id=str(value["run_id"]),
                created=str(value.get("created", "")),
                seconds=float(value.get("seconds", 0.0)),
                class_names=tuple(str(name) for name in value["class_names"]),
                input_size=tuple(int(n) for n in value.get("input_size", (224, 224, 3))),
                preprocessing=str(value.get("preprocessing", "")),
                weights=WeightsInfo(**_known(WeightsInfo, value["weights"])),
                config=TrainConfig.from_json(value["config"]),
                dataset=DatasetInfo.from_json(value["dataset"]),
                split=Split.from_json(value["split"]),
                features=ExtractionStats(**_known(ExtractionStats, features)) if features else None,
                history={key: [float(v) for v in history.get(key, [])] for key in HISTORY_KEYS},
                epochs_completed=int(value["epochs_completed"]),
                best_epoch=int(value.get("best_epoch", value["epochs_completed"])),
                stopped=str(value.get("stopped", "")),
                evaluation=Evaluation.from_json(value["evaluation"]),
                versions=dict(value.get("versions") or {}),
                standardised_features=bool(value.get("standardised_features", False)),
                fine_tuned_after=value.get("fine_tuned_after"),
                calibration=(
                    Calibration.from_json(value["calibration"])
                    if value.get("calibration")
                    else None
                ),
                head_only=bool(value.get("head_only", False)),
                cross_validation=(
                    Scores.from_json(value["cross_validation"])
                    if value.get("cross_validation")
                    else None
                ),
                owner=str(value.get("owner") or ""),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not the metadata of a Flower Lens run ({exc!r})") from exc
