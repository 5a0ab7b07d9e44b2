"""End to end in a real headless Chromium: `streamlit run app.py`, every page, Train, Classify.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; Playwright's own browser
download is never used. Screenshots of every page go to tests/screenshots/ (git-ignored),
or to $FLOWER_LENS_SCREENSHOTS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, make_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("FLOWER_LENS_SCREENSHOTS", REPO / "tests" / "screenshots"))

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(
        "no browser: install Debian's chromium (make browser) to run the browser tests",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """Run `streamlit run app.py` on a free localhost port; yield its address once healthy."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.time() < deadline, f"the server did not come up:\n{log.read_text()}"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(sample_dir: Path, sample, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by `streamlit run` on a free localhost port: the small sample, one run."""
    from flower_model.config import TrainConfig
    from flower_model.train import train

    home = tmp_path_factory.mktemp("browser-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_HOME", str(home))
        train(sample, TrainConfig(epochs=3, batch_size=8, weights="none", patience=0))
    env = {"FLOWER_LENS_HOME": str(home), "FLOWER_LENS_DATA": str(sample_dir)}
    with serve(env, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.base_url = server
    yield tab
    context.close()


def visit(page, path: str) -> None:
    page.goto(f"{page.base_url}/{path}")
    page.wait_for_selector("h1")
    # Let the script finish: Streamlit shows a running indicator while it works, and grey
    # skeletons where elements are still to come.
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
              && !document.querySelector('[data-testid="stSkeleton"]')""",
        timeout=60_000,
    )


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.content()[:2000]


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def plot_points(page) -> list[list[int]]:
    """Return, for each plotly chart on the page, the number of points of each trace."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
            el => (el.data || []).map(trace => (trace.y || []).length))"""
    )


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("", "Flower Lens"),
        ("explore", "Explore the dataset"),
        ("train", "Train"),
        ("evaluate", "Evaluate"),
        ("classify", "Classify"),
    ],
)
def test_every_page_opens_without_error(page, path: str, heading: str) -> None:
    visit(page, path)
    assert heading in page.locator("h1").first.inner_text()
    no_errors(page)
    if path == "explore":
        # The photo grid: every tile's image loaded.
        page.locator('[data-testid="stImage"] img').first.wait_for()
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll('[data-testid="stImage"] img'))
                  .every(img => img.complete && img.naturalWidth > 0)"""
        )
    if path in ("", "explore"):
        shoot(page, path or "home")


def test_train_curves_grow_then_stop(page) -> None:
    visit(page, "train")
    page.get_by_role("spinbutton", name="Epochs").fill("400")
    page.get_by_role("spinbutton", name="Early stopping patience").fill("0")
    page.get_by_role("button", name="Train", exact=True).click()
    # Features first (40 photos through ResNet50), then epochs: the loss curve must grow.
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .some(el => el.data && el.data[0] && (el.data[0].y || []).length >= 2)""",
        timeout=180_000,
    )
    first = max(max(p) for p in plot_points(page) if p)
    page.wait_for_function(
        f"""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .some(el => el.data && el.data[0] && (el.data[0].y || []).length > {first})""",
        timeout=60_000,
    )
    assert "training epoch" in page.locator('[data-testid="stProgress"]').first.inner_text()
    shoot(page, "train")
    page.get_by_role("button", name="Stop", exact=True).click()
    # The run keeps its best completed epoch and says why it ended.
    page.get_by_text("stopped by the user").wait_for(timeout=60_000)
    assert "Saved run" in page.locator('[data-testid="stAlert"]', has_text="Saved run").inner_text()
    no_errors(page)


def test_evaluate_shows_the_run(page) -> None:
    visit(page, "evaluate")
    page.get_by_text("Confusion matrix").first.wait_for()
    no_errors(page)
    shoot(page, "evaluate")


def test_classify_an_uploaded_photo(page, sample) -> None:
    visit(page, "classify")
    photo = sample.path_of(next(r for r in sample.records if r.path.startswith("sunflower/")))
    page.locator('input[type="file"]').set_input_files(str(photo))
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .some(el => el.data && el.data[0] && el.data[0].orientation === 'h')""",
        timeout=90_000,
    )
    bars = page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .filter(el => el.data && el.data[0] && el.data[0].orientation === 'h')
              .map(el => Array.from(el.data[0].y))"""
    )
    assert len(bars) == 1
    assert sorted(bars[0]) == list(sample.class_names)
    no_errors(page)
    shoot(page, "classify")


def test_a_shared_link_opens_its_page_and_dataset_on_a_fresh_server(
    browser, sample_dir: Path, tmp_path: Path
) -> None:
    leaves = tmp_path / "data" / "leaves"
    for i, name in enumerate(("oak", "ash")):
        for j in range(3):
            make_photo(leaves / name / f"{j}.jpg", (40 * i, 150, 40), seed=10 * i + j)
    env = {
        "FLOWER_LENS_HOME": str(tmp_path / "home"),
        "FLOWER_LENS_DATA": str(sample_dir),
        "FLOWER_LENS_DATA_ROOTS": os.pathsep.join([str(sample_dir), str(tmp_path / "data")]),
    }
    with serve(env, tmp_path / "streamlit.log") as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1200})
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        tab.base_url = url
        # The very first request the server gets is a link straight to a page.
        visit(tab, f"explore?data={leaves}")
        assert "Explore the dataset" in tab.locator("h1").first.inner_text()
        nav = tab.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Home" in nav and "Classify" in nav and "app" not in nav.split()
        tab.get_by_text("oak · 0.jpg").wait_for()
        no_errors(tab)
        context.close()
