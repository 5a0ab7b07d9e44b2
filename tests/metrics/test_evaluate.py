"""Metrics by hand-checkable numbers, and evaluation of a run on its own held-out photos."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.metrics.evaluate import (
    Evaluation,
    class_metrics,
    confusion_matrix,
    evaluate_predictions,
)
from flower_model.workflows.evaluate import evaluate_run


def test_confusion_matrix_counts_true_by_predicted() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_precision_recall_f1() -> None:
    # class a: 3 right, 1 taken for b; b: 4 right, 2 taken for a
    labels, predicted = (
        np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
        np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1]),
    )
    a, b = class_metrics(labels, predicted, ["a", "b"])
    assert a.precision == pytest.approx(3 / 5) and a.recall == pytest.approx(3 / 4)
    assert a.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert b.precision == pytest.approx(4 / 5) and b.recall == pytest.approx(4 / 6)
    assert (a.support, b.support) == (4, 6)


def test_never_predicted_class_has_zero_precision_not_nan() -> None:
    (a, b) = class_metrics(np.array([0, 0, 1]), np.array([0, 0, 0]), ["a", "b"])
    assert b.precision == 0.0 and b.recall == 0.0 and b.f1 == 0.0


def test_mistakes_are_the_most_confidently_wrong_first() -> None:
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.05, 0.95], [0.6, 0.4], [0.2, 0.8]])
    labels = [0, 0, 0, 1, 1]
    result = evaluate_predictions(labels, probabilities, ["a", "b"], ["p0", "p1", "p2", "p3", "p4"])
    assert result.accuracy == pytest.approx(2 / 5)
    assert [m.path for m in result.mistakes] == ["p2", "p1", "p3"]
    assert result.mistakes[0].probability == pytest.approx(0.95)
    assert result.mistakes[0].true_class == "a" and result.mistakes[0].predicted_class == "b"
    expected_loss = -np.mean(np.log([0.9, 0.3, 0.05, 0.4, 0.8]))
    assert result.loss == pytest.approx(expected_loss)
    assert Evaluation.from_json(result.to_json()) == result


def test_evaluate_run_uses_only_the_held_out_split(sample, warm_home, resnet) -> None:
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train
    from tests.conftest import built_once

    info = train(sample, TrainConfig(epochs=2, batch_size=8, weights="none", patience=0))
    with built_once(resnet):  # the run's head loads under ResNet50 of its weights, built once
        evaluation = evaluate_run(info.run_id, sample)
    split = info.metadata.split
    assert evaluation.count == len(split.val)
    assert sum(sum(row) for row in evaluation.confusion) == len(split.val)
    assert {m.path for m in evaluation.mistakes} <= set(split.val)
    stored = info.metadata.evaluation
    assert evaluation.accuracy == pytest.approx(stored.accuracy)
    assert evaluation.loss == pytest.approx(stored.loss, rel=1e-4)
