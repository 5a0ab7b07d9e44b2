"""The learning-rate range test: the loss against a rising rate, and the rate suggested."""

from __future__ import annotations

import numpy as np

from flower_model.model.config import TrainConfig
from flower_model.model.lr_range import STEPS, range_test, steepest_fall
from tests.model.test_search import separable


def test_the_steepest_fall_is_found_before_the_lowest_point() -> None:
    rates = np.geomspace(1e-6, 1.0, 100)
    # Flat, a fall centred on 1e-3, the lowest near 1e-2, then a blow-up.
    losses = 2.0 - 1.5 / (1 + np.exp(-4 * (np.log10(rates) + 3))) + 50 * rates**2
    suggested = steepest_fall(rates, losses)
    assert suggested is not None and 5e-4 < suggested < 2e-3
    assert steepest_fall(rates, np.linspace(1.0, 2.0, 100)) is None  # never falls


def test_the_range_test_ends_when_the_loss_blows_up_and_suggests_a_rate() -> None:
    features, labels = separable()
    tested = range_test(features, labels, 4, TrainConfig(weights="none", batch_size=32))
    assert 20 < len(tested.rates) <= STEPS and len(tested.rates) == len(tested.losses)
    assert np.all(np.diff(tested.rates) > 0)
    assert tested.suggested is not None and 1e-5 < tested.suggested < 1e-1
    assert min(tested.losses) < tested.losses[0]
