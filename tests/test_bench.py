"""`make bench` still works: a tiny smoke run (a few photos, one repetition). Not a timing test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.settings import QUICK, with_sizes
from flower_model.model.precision import cpu_has_bf16

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.resnet
@pytest.mark.browser  # it times clicks in Chromium when there is one
def test_quick_benchmark_writes_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True
    for section in ("variants", "extraction", "training", "classify", "cold_start"):
        assert section in results
    assert results["extraction"]["pipeline_images_per_s"] > 0
    assert results["training"]["cached"]["epochs"] == QUICK.epochs
    assert results["home_import"]["tensorflow_imported"] is False
    names = {v["name"] for v in results["variants"]["variants"]}
    assert {"plain Keras float32", "BatchNorm folded, float32"} <= names
    # bfloat16 is measured where the CPU has it, and then it is what auto chose.
    assert ("BatchNorm folded, bfloat16" in names) == results["variants"]["cpu_bf16"]
    assert results["variants"]["chosen"] == ("bfloat16" if cpu_has_bf16() else "float32")
    # Folding BatchNorm changes nothing but the speed.
    folded = next(
        v for v in results["variants"]["variants"] if v["name"] == "BatchNorm folded, float32"
    )
    assert folded["cosine_min"] > 0.99999 and folded["max_relative_error"] < 1e-4
    assert [step["images"] for step in results["growth"]] == list(QUICK.growth_sizes)
    assert "| Measurement | Result | Target | Met |" in done.stdout
    (measured,) = results["exports"]["formats"]
    assert measured["format"] == QUICK.export_formats[0] and measured["model_bytes"] > 1e7
    assert measured["top1_agreement"] == 1.0 and measured["max_difference"] < 1e-4
    assert f"| {measured['format']} |" in done.stdout
    # The audit ran on the growth series' cached features, none computed again.
    audit = results["audit"]
    assert audit["photos"] == max(QUICK.growth_sizes) and audit["seconds"] > 0
    assert audit["folds_seconds"] > 0 and "Audit of 16 photos" in done.stdout
    # The command line trained twice: the second time every feature came from the cache,
    # and a run keeps its head alone.
    retrain = results["retrain"]
    cold, warm = (
        [line for _, line in retrain[which]["lines"] if " from cache, " in line]
        for which in ("cold", "warm")
    )
    assert cold == ["features: 0 from cache, 40 computed"]
    assert warm == ["features: 40 from cache, 0 computed"]
    assert 1e6 < retrain["warm"]["run_bytes"] < 5e6 and retrain["in_process_seconds"] > 0
    assert "| Warm: every feature cached" in done.stdout
    # Two clicks on Train in a real browser, each timed to the saved run's final curves.
    if results["app_click"] is None:
        assert results["app_click_missing"] and "not measured" in done.stdout
    else:
        click = results["app_click"]
        assert click["photos"] == 40 and click["epochs"] == QUICK.epochs
        assert 0 < click["seconds"] < 120 and click["first_seconds"] > 0
        assert "click Train to the final curves drawn" in done.stdout
    assert results["training"]["cached_again"]["epochs"] == QUICK.epochs
    # bench/README.md is written from the JSON alone: the same tables as the run printed.
    from bench.readme import compose

    readme = compose(results, None, "## Notes\n")
    assert markdown_of(done.stdout) in readme and "No run of `python -m bench.hosting`" in readme


def markdown_of(stdout: str) -> str:
    """Return the benchmark's markdown, from its heading on."""
    return stdout[stdout.index("## Flower Lens benchmark") :].rstrip("\n")


def test_growth_sizes_must_cover_every_class() -> None:
    assert with_sizes(QUICK, (40, 10, 10)).growth_sizes == (10, 40)
    with pytest.raises(ValueError, match="at least 5"):
        with_sizes(QUICK, (3,))
