"""Metrics on the held-out split: accuracy, per-class precision/recall/F1, confusion, mistakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# How many confidently wrong photos an evaluation keeps.
WORST_MISTAKES = 12


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class, and how many held-out photos it has."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Mistake:
    """A held-out photo the model got wrong, with the probability it gave the wrong class."""

    path: str
    true_class: str
    predicted_class: str
    probability: float
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class Evaluation:
    """How a run does on photos it never trained on."""

    class_names: tuple[str, ...]
    count: int
    accuracy: float
    loss: float
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true class, columns: predicted class
    mistakes: tuple[Mistake, ...]
    # Every held-out photo, its class and its probabilities (older runs kept none).
    paths: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()
    probabilities: tuple[tuple[float, ...], ...] = ()

    def in_cell(self, true: int, predicted: int) -> list[int]:
        """Return the held-out photos (indices) of one confusion-matrix cell, surest first."""
        rows = [
            i
            for i, (label, row) in enumerate(zip(self.labels, self.probabilities, strict=True))
            if label == true and int(np.argmax(row)) == predicted
        ]
        return sorted(rows, key=lambda i: -max(self.probabilities[i]))

    def to_json(self) -> dict:
        """Return the evaluation as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> Evaluation:
        """Rebuild an evaluation stored in a run's metadata."""
        return cls(
            class_names=tuple(value["class_names"]),
            count=int(value["count"]),
            accuracy=float(value["accuracy"]),
            loss=float(value["loss"]),
            per_class=tuple(ClassMetrics(**m) for m in value["per_class"]),
            confusion=tuple(tuple(int(c) for c in row) for row in value["confusion"]),
            mistakes=tuple(
                Mistake(**{**m, "probabilities": tuple(m["probabilities"])})
                for m in value["mistakes"]
            ),
            paths=tuple(value.get("paths", ())),
            labels=tuple(int(v) for v in value.get("labels", ())),
            probabilities=tuple(tuple(row) for row in value.get("probabilities", ())),
        )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Return counts[true, predicted], a row and a column for every class, seen or not."""
    from sklearn.metrics import confusion_matrix as counts

    return counts(labels, predicted, labels=np.arange(num_classes)).astype(np.int64)


def class_metrics(
    labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
) -> tuple[ClassMetrics, ...]:
    """Return precision, recall and F1 per class (0 where undefined), and each class's count."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=np.arange(len(class_names)), zero_division=0.0
    )
    return tuple(
        ClassMetrics(name, float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    )


def evaluate_predictions(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str],
    worst: int = WORST_MISTAKES,
) -> Evaluation:
    """Return the metrics of predicted probabilities against true labels."""
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(labels) == 0:
        raise ValueError("no held-out photos to evaluate on")
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted, len(class_names))
    true_probability = probabilities[np.arange(len(labels)), labels]
    loss = float(-np.mean(np.log(np.clip(true_probability, 1e-7, 1.0))))
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:worst]
    mistakes = tuple(
        Mistake(
            path=paths[i],
            true_class=class_names[labels[i]],
            predicted_class=class_names[predicted[i]],
            probability=float(probabilities[i, predicted[i]]),
            probabilities=tuple(round(float(p), 6) for p in probabilities[i]),
        )
        for i in wrong
    )
    return Evaluation(
        class_names=tuple(class_names),
        count=len(labels),
        accuracy=float(np.mean(predicted == labels)),
        loss=loss,
        per_class=class_metrics(labels, predicted, class_names),
        confusion=tuple(tuple(int(c) for c in row) for row in confusion),
        mistakes=mistakes,
        paths=tuple(paths),
        labels=tuple(int(v) for v in labels),
        probabilities=tuple(tuple(round(float(p), 6) for p in row) for row in probabilities),
    )
