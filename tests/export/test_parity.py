"""The comparisons an export is checked with."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.export import parity


def test_compare_measures_difference_and_agreement() -> None:
    app = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    exported = np.array([[0.69, 0.21, 0.1], [0.1, 0.4, 0.5], [0.3, 0.3, 0.4]])
    result = parity.compare(exported, app)
    assert result.photos == 3
    assert result.max_difference == pytest.approx(0.1)
    assert result.top1_agreement == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shape"):
        parity.compare(exported[:, :2], app)


def test_spread_takes_every_part_of_a_split() -> None:
    assert parity.spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert parity.spread([1, 2], 5) == [1, 2]


def test_a_run_whose_photos_are_gone_is_checked_on_generated_pictures(monkeypatch) -> None:
    monkeypatch.setattr(parity, "split_photos", lambda info, which: [])
    paths, batch, source = parity.check_photos(info=None, count=6)
    assert paths == [] and batch.shape == (6, 224, 224, 3) and batch.dtype == np.uint8
    assert source.startswith("generated pictures")
