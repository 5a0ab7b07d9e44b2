"""Which arithmetic extracts features: the CPU's flags, the remembered checks, the choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flower_model.model import precision
from flower_model.model.config import TrainConfig


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    assert precision.cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not precision.cpu_has_bf16(cpuinfo)
    assert not precision.cpu_has_bf16(tmp_path / "missing")


def test_a_corrupt_record_of_checks_is_ignored(fresh_home) -> None:
    precision.record_cosine("abc", 0.9995)
    assert precision.recorded_cosine("abc") == pytest.approx(0.9995)
    (fresh_home / precision.VERDICTS_FILE).write_text("{not json")
    assert precision.recorded_cosine("abc") is None
    precision.record_cosine("abc", 0.99)
    assert precision.recorded_cosine("abc") == pytest.approx(0.99)


def test_auto_measures_once_per_weights_and_follows_the_measurement(
    fresh_home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "device_has_bf16", lambda: True)
    measured: list[str] = []

    def measure(value: float):
        def run() -> float:
            measured.append("x")
            return value

        return run

    assert precision.choose_precision("auto", "good", measure(0.99999)) == "bfloat16"
    assert precision.choose_precision("auto", "good", measure(0.5)) == "bfloat16"  # remembered
    assert precision.choose_precision("auto", "bad", measure(0.99)) == "float32"
    assert len(measured) == 2
    # What is asked for is given, without a measurement.
    assert precision.choose_precision("float32", "good", measure(1.0)) == "float32"
    assert precision.choose_precision("bfloat16", "bad", measure(1.0)) == "bfloat16"
    assert len(measured) == 2
    monkeypatch.setattr(precision, "device_has_bf16", lambda: False)
    assert precision.choose_precision("auto", "new", measure(1.0)) == "float32"
    assert len(measured) == 2  # emulated bfloat16 is never considered


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float8")
    with pytest.raises(ValueError, match="precision"):
        precision.choose_precision("half", "x", lambda: 1.0)


def test_cosine_similarity_of_rows() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, -1.0], [0.0, 0.0]])
    np.testing.assert_allclose(precision.cosine_similarity(a, b), [1.0, 0.0, 1.0])
