"""End to end in a real headless Chromium: `streamlit run app.py`, every page, Train, Classify.

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; Playwright's own browser
download is never used. Screenshots of every page go to tests/screenshots/ (git-ignored),
or to $FLOWER_LENS_SCREENSHOTS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import (
    chromium,
    no_errors,
    plotly_bars,
    require_browser,
    serve,
    settle,
    visit,
)
from tests.conftest import REPO, copy_home, make_photo

require_browser()
SHOTS = Path(os.environ.get("FLOWER_LENS_SCREENSHOTS", REPO / "tests" / "screenshots"))


@pytest.fixture(scope="module")
def server(
    sample_dir: Path, sample, warm_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app served by `streamlit run` on a free localhost port: the small sample (its
    features cached), one run."""
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    home = tmp_path_factory.mktemp("browser") / "home"
    with pytest.MonkeyPatch.context() as patch:
        copy_home(warm_template, home, patch)
        train(sample, TrainConfig(epochs=3, batch_size=8, weights="none", patience=0))
    env = {
        "FLOWER_LENS_HOME": str(home),
        "FLOWER_LENS_DATA": str(sample_dir),
        "FLOWER_LENS_BACKGROUND_FEATURES": "1",
    }
    with serve(env, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.base_url = server
    yield tab
    context.close()


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
        ("data_issues", "Data issues"),
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
    if path == "explore":
        # A closed tab is drawn when opened: the feature map's tab.
        page.get_by_role("tab", name="Feature map").click()
        page.get_by_text("Each dot is a photo").first.wait_for()
        no_errors(page)
        page.get_by_role("tab", name="Photos").click()
    if path in ("", "explore", "data_issues"):
        shoot(page, path or "home")


def test_train_curves_grow_then_stop(page) -> None:
    visit(page, "train")
    # Fine-tuning: the head's 400 epochs on 32 cached features take seconds, and then each
    # epoch runs ResNet50 on the photos: a training long enough to watch and to stop.
    page.get_by_text("Head, then fine-tune conv5").click()
    page.get_by_role("spinbutton", name="Epochs").fill("400")
    page.get_by_role("spinbutton", name="Early stopping patience").fill("0")
    page.get_by_role("button", name="Train", exact=True).click()
    # The features are cached (the server's workspace): epochs at once; the curve must grow.
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
    progress = page.locator('[data-testid="stProgress"]').first
    page.wait_for_function(
        """() => (document.querySelector('[data-testid="stProgress"]') || {}).innerText
              ?.includes('training epoch')""",
        timeout=120_000,
    )
    # While it trains the settings are folded away: progress and curves without scrolling.
    assert not page.get_by_role("spinbutton", name="Epochs").is_visible()
    box = progress.bounding_box()
    assert box is not None and box["y"] + box["height"] < 700
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


def test_a_click_on_a_confusion_cell_shows_its_photos(page, sample) -> None:
    visit(page, "evaluate")
    page.get_by_text("click a cell").first.wait_for()
    # Where the cell (true daisy, predicted daisy) is drawn, from plotly's own axes.
    point = page.evaluate(
        """() => {
            const el = Array.from(document.querySelectorAll('.js-plotly-plot'))
                .find(e => e.data && e.data[0] && e.data[0].type === 'heatmap');
            const box = el.getBoundingClientRect();
            const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis;
            const name = el.data[1].x[0];  // the cell markers: (true 0, predicted 0) first
            return {x: box.x + xa._offset + xa.d2p(name), y: box.y + ya._offset + ya.d2p(name),
                    count: el.data[1].customdata[0][2], name: name};
        }"""
    )
    page.mouse.click(point["x"], point["y"])
    heading = f"{point['name']}, right: {point['count']} photo(s)"
    page.get_by_text(heading).wait_for(timeout=60_000)
    settle(page)
    # The cell's photos, each captioned with its path (at most 12 are drawn).
    captions = page.evaluate(
        """() => Array.from(document.querySelectorAll('[data-testid="stImage"]'))
              .map(el => el.innerText.trim()).filter(text => text)"""
    )
    assert len(captions) == min(point["count"], 12)
    assert all(caption.startswith(f"{point['name']}/") for caption in captions)
    no_errors(page)


def test_evaluate_exports_and_downloads_a_model(page, tmp_path: Path) -> None:
    """Export tab: Prepare the Keras export (the quickest; every format's files are checked in
    tests/export), watch its progress, download the .zip, and find the model and a
    predict.py in it."""
    import zipfile

    visit(page, "evaluate")
    page.get_by_role("tab", name="Export").click()
    page.locator('[data-testid="stRadio"] label', has_text="Keras").click()
    settle(page)  # the fragment's rerun for the new choice, before the click
    page.get_by_role("button", name="Prepare the export").click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
    download_button = page.locator('[data-testid="stDownloadButton"] button')
    download_button.wait_for(timeout=300_000)
    no_errors(page)
    shoot(page, "export")
    with page.expect_download(timeout=120_000) as caught:
        download_button.click()
    target = tmp_path / caught.value.suggested_filename
    caught.value.save_as(target)
    assert target.name.endswith("-keras.zip")
    with zipfile.ZipFile(target) as archive:
        names = {Path(name).name for name in archive.namelist()}
    assert {"model.keras", "labels.txt", "predict.py", "model_card.md"} <= names


def test_classify_an_uploaded_photo(page, sample) -> None:
    visit(page, "classify")
    photo = sample.path_of(next(r for r in sample.records if r.path.startswith("sunflower/")))
    page.locator('input[type="file"]').set_input_files(str(photo))
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .some(el => el.data && el.data[0] && el.data[0].orientation === 'h')""",
        timeout=90_000,
    )
    bars = plotly_bars(page)
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
