"""Click to curves in the app, as a visitor sees it: `streamlit run app.py` in a real headless
Chromium, the Train page on a folder whose features are all cached, Train clicked twice (the
first wakes the server's worker) and the second timed from the click until the saved run's
final curves are drawn."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flower_model.core.workspace import DATA_ENV, HOME_ENV

# The final curves: every plotly chart of the page holds one point per epoch.
CURVES_DRAWN = """(epochs) => {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    return plots.length >= 2 && plots.every(
        el => el.data && el.data.length && el.data.every(t => (t.y || []).length === epochs));
}"""


@dataclass(frozen=True)
class AppClick:
    """Two clicks on Train in the browser: the server's first training and the next."""

    photos: int
    epochs: int
    first_seconds: float  # click to final curves, the worker process starting with it
    seconds: float  # the same, the worker warm: what the "click to curves" is


def browser_missing() -> str | None:
    """Return why the browser measurement cannot run here, or None when it can."""
    from tests.browser.chromium import CHROMIUM

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not CHROMIUM.exists():
        return f"no browser at {CHROMIUM} (make browser installs Debian's chromium)"
    return None


def _train_once(page, epochs: int) -> float:
    """Click Train on the open Train page; return the seconds until the new run's curves."""
    from tests.browser.chromium import settle

    saved = page.locator('[data-testid="stAlert"]', has_text="Saved run")
    before = saved.inner_text() if saved.count() else ""
    page.get_by_role("spinbutton", name="Epochs").fill(str(epochs))
    page.get_by_role("spinbutton", name="Early stopping patience").fill("0")
    start = time.perf_counter()
    page.get_by_role("button", name="Train", exact=True).click()
    page.wait_for_function(
        """(before) => Array.from(document.querySelectorAll('[data-testid="stAlert"]'))
              .some(el => el.innerText.includes('Saved run') && el.innerText !== before)""",
        arg=before,
        timeout=300_000,
        polling=20,
    )
    page.wait_for_function(CURVES_DRAWN, arg=epochs, timeout=60_000, polling=20)
    seconds = time.perf_counter() - start
    settle(page)
    return seconds


def measure_app_click(data: Path, home: Path, epochs: int, log: Path) -> AppClick:
    """Return click-to-curves on the Train page for `data`, whose features `home` caches."""
    from tests.browser.chromium import chromium, serve, visit

    photos = sum(1 for p in data.rglob("*") if p.is_file())
    env = {HOME_ENV: str(home), DATA_ENV: str(data)}
    with serve(env, log) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(120_000)
        page.base_url = url
        visit(page, "train")
        page.get_by_text("none (no transfer learning)", exact=False).first.click()
        first = _train_once(page, epochs)
        again = _train_once(page, epochs)
    return AppClick(photos, epochs, first, again)
