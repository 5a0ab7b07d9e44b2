"""Replicas in Chromium: two `streamlit run` servers on one workspace and one Ray cluster share
one job board (a training started on one is watched and stopped on the other, a second one on
the same dataset is refused with a reason); and without the setting, no Ray process starts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import (
    chromium,
    no_errors,
    require_browser,
    serve,
    server_process,
    visit,
)
from tests.conftest import REPO, copy_home

require_browser()
pytestmark = [pytest.mark.slow, pytest.mark.browser]
SHOTS = Path(os.environ.get("FLOWER_LENS_SCREENSHOTS", REPO / "tests" / "screenshots"))


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def tab(browser, url: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    page.set_default_timeout(60_000)
    page.base_url = url
    return page


def curve_points(page) -> int:
    """Return the most points of any trace of any plotly chart on the page."""
    return page.evaluate(
        """() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))
              .flatMap(el => (el.data || []).map(trace => (trace.y || []).length)))"""
    )


@pytest.fixture(scope="module")
def replicas(
    ray_cluster, sample_dir: Path, warm_template: Path, tmp_path_factory
) -> Iterator[tuple[str, str, Path, str]]:
    """Two servers on one workspace (the sample's features cached) and one Ray cluster."""
    home = tmp_path_factory.mktemp("replicas") / "home"
    with pytest.MonkeyPatch.context() as patch:
        copy_home(warm_template, home, patch)
    env = {
        "FLOWER_LENS_HOME": str(home),
        "FLOWER_LENS_DATA": str(sample_dir),
        "FLOWER_LENS_CLUSTER": ray_cluster.address,
        "FLOWER_LENS_BACKGROUND_FEATURES": "0",
    }
    logs = tmp_path_factory.mktemp("replica-logs")
    from flower_model.service.cluster_jobs import end_board

    with serve(env, logs / "a.log") as a, serve(env, logs / "b.log") as b:
        yield a, b, home, ray_cluster.address
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_CLUSTER", ray_cluster.address)
        end_board()


def test_a_training_started_on_one_replica_is_watched_and_stopped_on_the_other(
    browser, replicas, sample, monkeypatch
) -> None:
    from flower_model.model.config import TrainConfig
    from flower_model.service.cluster_jobs import ClusterJobBoard
    from flower_model.service.jobs import JobConflict

    url_a, url_b, home, address = replicas
    a, b = tab(browser, url_a), tab(browser, url_b)
    visit(a, "train")
    # The head alone for 5,000 epochs of the sample's cached features: tens of seconds, long
    # enough to watch from the other replica and to stop there, and a Stop takes effect
    # within a tenth of a second (fine-tuning's first batch, under the other tests' load,
    # took minutes to begin).
    a.get_by_role("spinbutton", name="Epochs").fill("5000")
    a.get_by_role("spinbutton", name="Early stopping patience").fill("0")
    a.get_by_role("button", name="Train", exact=True).click()
    a.wait_for_function(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .some(el => el.data && el.data[0] && (el.data[0].y || []).length >= 2)""",
        timeout=240_000,
    )
    # Replica B, which started nothing, shows the same training with its curves.
    visit(b, "train")
    b.wait_for_function(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .some(el => el.data && el.data[0] && (el.data[0].y || []).length >= 2)""",
        timeout=120_000,
    )
    assert curve_points(b) >= 2
    SHOTS.mkdir(parents=True, exist_ok=True)
    b.screenshot(path=str(SHOTS / "replica-b-watching.png"), full_page=True)
    # A second training of the same dataset, from a third replica (this test), is refused.
    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    board = ClusterJobBoard(address)
    with pytest.raises(JobConflict, match="already"):
        board.start_training(sample, TrainConfig(weights="none", epochs=1))
    # Stop from B: A's page says how it ended.
    b.get_by_role("button", name="Stop", exact=True).click()
    a.get_by_text("stopped by the user").wait_for(timeout=120_000)
    b.get_by_text("stopped by the user").wait_for(timeout=120_000)
    no_errors(a)
    no_errors(b)


def test_without_the_setting_no_ray_process_starts(
    browser, sample_dir: Path, stand_in_template: Path, tmp_path, monkeypatch
) -> None:
    home = copy_home(stand_in_template, tmp_path / "home", monkeypatch)
    env = {
        "FLOWER_LENS_HOME": str(home),
        "FLOWER_LENS_DATA": str(sample_dir),
        "FLOWER_LENS_CLUSTER": "",
    }
    with serve(env, tmp_path / "server.log") as url:
        page = tab(browser, url)
        for path in ("", "train", "explore"):
            visit(page, path)
            no_errors(page)
        server = server_process(url)
        processes = [server, *server.children(recursive=True)]
        commands = [" ".join(p.cmdline()) for p in processes]
        assert len(processes) >= 2  # the server and its worker
        assert not any("ray" in command.lower() for command in commands), commands
