"""Calibration maths against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.metrics.calibration import (
    Calibration,
    calibrate,
    confidence_threshold,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability,
    scaled,
)

# Four held-out photos of two classes: sure and right, sure and wrong, less sure and wrong,
# least sure and right.
LABELS = [0, 1, 0, 1]
PROBABILITIES = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.35, 0.65]])


def test_expected_calibration_error_by_hand() -> None:
    # One photo in each of the bins [0.9, 1), [0.8, 0.9), [0.7, 0.8), [0.6, 0.7):
    # |1 − 0.95| + |0 − 0.85| + |0 − 0.75| + |1 − 0.65| = 0.05 + 0.85 + 0.75 + 0.35 = 2.0, / 4.
    assert expected_calibration_error(LABELS, PROBABILITIES) == pytest.approx(0.5)
    bins = reliability(LABELS, PROBABILITIES)
    assert [b.count for b in bins] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert [b.accuracy for b in bins[6:]] == [1.0, 0.0, 0.0, 1.0]
    assert bins[9].confidence == pytest.approx(0.95) and bins[9].upper == 1.0


def test_a_perfectly_calibrated_set_has_no_error() -> None:
    # Top probability 0.75 on four photos, three of them right.
    probabilities = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error([0, 0, 0, 1], probabilities) == pytest.approx(0.0)


def test_temperature_scaling_by_hand() -> None:
    # Dividing log probabilities by T = 2 is the square root, renormalised.
    assert scaled(np.array([[0.8, 0.2]]), 2.0)[0] == pytest.approx([2 / 3, 1 / 3])
    assert scaled(PROBABILITIES, 1.0) == pytest.approx(PROBABILITIES)
    # Overconfident: 99 % sure and right 80 % of the time. The best scaled probability is
    # 0.8, so log(0.99 / 0.01) / T = log(0.8 / 0.2): T = ln 99 / ln 4 = 3.3147.
    labels = [0] * 80 + [1] * 20
    sure = np.array([[0.99, 0.01]] * 100)
    t = fit_temperature(labels, sure)
    assert t == pytest.approx(np.log(99) / np.log(4), rel=1e-3)
    assert scaled(sure, t)[0, 0] == pytest.approx(0.8, rel=1e-3)
    assert log_loss(labels, scaled(sure, t)) < log_loss(labels, sure)
    # Right 90 % of the time yet only 60 % sure: the fitted T sharpens.
    assert fit_temperature([0] * 9 + [1], np.array([[0.6, 0.4]] * 10)) < 0.5
    # Always right: sharper is always better, the loss has no minimum, nothing is fitted.
    assert fit_temperature([0] * 10, np.array([[0.6, 0.4]] * 10)) is None
    # The fit is the minimum of the loss: a grid around it finds nothing lower.
    t = fit_temperature(LABELS, PROBABILITIES)
    grid = [log_loss(LABELS, scaled(PROBABILITIES, g)) for g in np.linspace(0.2, 10, 200)]
    assert log_loss(LABELS, scaled(PROBABILITIES, t)) <= min(grid) + 1e-6


def test_coverage_and_the_threshold_that_keeps_a_precision_by_hand() -> None:
    thresholds, coverage, accuracy = coverage_curve(LABELS, PROBABILITIES)
    assert thresholds == pytest.approx([0.95, 0.85, 0.75, 0.65])
    assert coverage == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert accuracy == pytest.approx([1.0, 0.5, 1 / 3, 0.5])
    chosen = confidence_threshold(LABELS, PROBABILITIES, target=0.95, support=1)
    assert chosen.threshold == pytest.approx(0.95) and chosen.coverage == 0.25
    assert chosen.precision == 1.0 and chosen.below_accuracy == pytest.approx(1 / 3)
    # 50 % is kept all the way down: every photo is above the threshold, none below.
    low = confidence_threshold(LABELS, PROBABILITIES, target=0.5, support=1)
    assert low.threshold == pytest.approx(0.65) and low.below_accuracy is None
    # One sure photo is not enough to rest a threshold on: with a support of 2, the only
    # threshold that keeps 95 % has one photo above it, so there is none.
    assert confidence_threshold(LABELS, PROBABILITIES, target=0.95, support=2) is None
    # Not even the surest photo is right: no threshold keeps 95 %.
    assert confidence_threshold([1], np.array([[0.9, 0.1]]), support=1) is None


def test_tied_probabilities_are_kept_or_dropped_together() -> None:
    probabilities = np.array([[0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    thresholds, coverage, accuracy = coverage_curve([0, 1, 0], probabilities)
    assert thresholds == pytest.approx([0.8, 0.6]) and coverage == pytest.approx([2 / 3, 1.0])
    assert accuracy == pytest.approx([0.5, 2 / 3])


def test_a_calibration_survives_json() -> None:
    calibration = calibrate(LABELS, PROBABILITIES)
    assert Calibration.from_json(calibration.to_json()) == calibration
    assert calibration.count == 4 and calibration.ece == pytest.approx(0.5)
    assert calibration.threshold is None  # four photos are too few to rest a threshold on
    # Many photos: 100 sure and right, 50 unsure, half right.
    labels = [0] * 100 + [0, 1] * 25
    probabilities = np.array([[0.97, 0.03]] * 100 + [[0.6, 0.4]] * 50)
    calibration = calibrate(labels, probabilities)
    assert Calibration.from_json(calibration.to_json()) == calibration
    assert calibration.threshold.threshold == pytest.approx(0.97)
    assert calibration.threshold.below_accuracy == pytest.approx(0.5)
    assert calibration.temperature is not None and calibration.threshold_scaled is not None
