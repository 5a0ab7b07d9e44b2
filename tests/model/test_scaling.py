"""Standardising features a block of rows at a time, from an array or from a selection of a
larger array's rows (float16, as cached), with the figures of the whole rows at once."""

from __future__ import annotations

import numpy as np
import pytest

from flower_model.model import scaling
from flower_model.model.scaling import (
    Selection,
    shifted_and_scaled,
    standardisation,
    standardised,
)


@pytest.fixture
def rows() -> np.ndarray:
    generator = np.random.default_rng(3)
    return (generator.gamma(2.0, 1.0, (1000, 16)) * ([1] * 15 + [0])).astype(np.float16)


def test_blocks_give_the_whole_rows_figures(rows, monkeypatch) -> None:
    monkeypatch.setattr(scaling, "STANDARDISED_BLOCK", 128)  # eight blocks here
    mean, std = standardisation(rows)
    whole = rows.astype(np.float64)
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std[:15], whole.std(axis=0)[:15], rtol=1e-5)
    assert std[15] == 1.0  # a feature that never varies is left as it is
    out = standardised(rows)
    assert out.dtype == np.float32 and out.shape == rows.shape
    np.testing.assert_allclose(out[:, :15], ((whole - mean) / std)[:, :15], atol=1e-5)


def test_a_selection_reads_the_rows_it_names_without_a_copy_of_them_all(rows, monkeypatch) -> None:
    monkeypatch.setattr(scaling, "STANDARDISED_BLOCK", 100)
    index = np.random.default_rng(0).permutation(len(rows))[:700]
    chosen = Selection(rows, index)
    assert len(chosen) == 700 and chosen.shape == (700, 16)
    picked = rows[index]
    for got, expected in zip(standardisation(chosen), standardisation(picked), strict=True):
        np.testing.assert_array_equal(got, expected)
    shift, scale = np.full(16, 0.5), np.full(16, 2.0)
    np.testing.assert_array_equal(
        shifted_and_scaled(chosen, shift, scale), shifted_and_scaled(picked, shift, scale)
    )
    np.testing.assert_allclose(
        shifted_and_scaled(chosen, shift, scale), (picked.astype(np.float32) - 0.5) * 2.0
    )
