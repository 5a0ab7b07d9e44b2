"""What the hosting tests and `python -m bench.hosting` share: the app served on a sample of
photos, tabs of one Chromium on it, a training started in one tab while others watch, the
server's health endpoint asked meanwhile, and the Classify page fed one photo after another.

The tests assert what these show about behaviour; the benchmark times them."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.browser.chromium import ask, serve, settle, visit
from tests.conftest import SHARED_SAMPLE, build_sample

# A training long enough to be watched: 100 epochs of the head on these photos end within the
# 2 s an open page takes to notice a job, and 400 at batch 64 (about 6 s since the loop draws
# its next batch ahead) once left a third page too little time; at batch 32 they take twice
# as many steps. The benchmark trains the same from the CLI.
EPOCHS = 400
BATCH_SIZE = 32
WATCHERS = 3
# How long a press may wait for the button to be ready, in milliseconds.
PRESS_MS = 1_000
# What a visitor who presses Train while another's job runs is told (the settings, Train with
# them, may already be folded away by the time they look, if their page noticed the job first).
TOLD = re.compile("already (running|waiting) on this dataset|A run is training on this dataset")
# What a page that is only open shows while another visitor's job runs.
WATCHED = re.compile("A run is training on this dataset")
# The caption under each photo that the Classify page has classified and drawn (the upload
# box's own list of files shows the names too, at once, before the server has seen them).
CAPTION = '[data-testid="stImageCaption"]'


@dataclass(frozen=True)
class Site:
    """The app served on a sample of photos, in a workspace of its own."""

    url: str
    data: Path  # the photos, flowers/<class>/*.jpg
    home: Path  # the server's FLOWER_LENS_HOME: its runs and feature cache
    env: dict[str, str]  # what the server was started with beyond the environment


# Photos per class the benchmark serves: the whole shared sample (else as many generated).
BENCH_PER_CLASS = 100


@contextlib.contextmanager
def hosted(folder: Path, per_class: int = BENCH_PER_CLASS) -> Iterator[Site]:
    """Serve the app from `folder` on `per_class` photos of each class of the shared sample
    (else generated ones, at most 40 a class), with an empty workspace; yield it once
    healthy, stop it afterwards."""
    if not (SHARED_SAMPLE / "flowers").is_dir():
        per_class = min(per_class, 40)
    data = build_sample(folder / "data", per_class=per_class)
    env = {"FLOWER_LENS_HOME": str(folder / "home"), "FLOWER_LENS_DATA": str(data)}
    with serve(env, folder / "streamlit.log") as url:
        yield Site(url, data, folder / "home", env)


def photos_of(site: Site) -> list[Path]:
    """Return the site's photos, always in the same order."""
    return sorted(site.data.rglob("*.jpg"))


def tab(browser, url: str):
    """Open a new tab, in a context (cookies, session) of its own, on the app at `url`."""
    page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
    page.set_default_timeout(120_000)
    page.base_url = url
    return page


class HealthProbe:
    """Asks the server's health endpoint ten times a second, in a thread, while entered (once
    or more); keeps the time of every answer, and what went wrong with any that failed."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url, self.timeout = f"{url}/_stcore/health", timeout
        self.asked = 0
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ask(self) -> None:
        self.asked += 1
        start = time.perf_counter()
        try:
            body = ask(self.url, timeout=self.timeout)
        except OSError as exc:  # refused, reset, timed out, an HTTP error status
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return
        if body != b"ok":
            self.failures.append(f"answered {body[:80]!r}")
            return
        self.seconds.append(time.perf_counter() - start)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._ask()
            stop.wait(0.1)

    @property
    def unanswered(self) -> int:
        """How many probes got no answer (failed, or still waiting when the probe stopped)."""
        return self.asked - len(self.seconds)

    def __enter__(self) -> HealthProbe:
        self._stop = threading.Event()  # its own, should an earlier thread still be running
        self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)


def record(page, pattern: re.Pattern) -> None:
    """Have the page note, from now on, whether its text ever matches `pattern`: a message
    shown for a few seconds is caught even while the caller waits on another tab."""
    page.evaluate(
        """(source) => {
            window.flowerLensSeen = window.flowerLensSeen || {};
            const pattern = new RegExp(source);
            const look = () => {
                if (pattern.test(document.body.textContent)) {
                    window.flowerLensSeen[source] = true;
                    observer.disconnect();
                }
            };
            const observer = new MutationObserver(look);
            observer.observe(document.body, {childList: true, subtree: true, characterData: true});
            look();
        }""",
        pattern.pattern,
    )


def seen(page, pattern: re.Pattern) -> bool:
    """Whether the page's text matched `pattern` at any time since `record`."""
    return page.evaluate("(source) => !!(window.flowerLensSeen || {})[source]", pattern.pattern)


def train_in(page) -> None:
    """Set the benchmark's CLI settings on a Train page, press Train, and wait until it
    trains."""
    page.get_by_role("spinbutton", name="Epochs").fill(str(EPOCHS))
    page.get_by_role("spinbutton", name="Early stopping patience").fill("0")
    page.get_by_role("spinbutton", name="Early stopping patience").press("Tab")
    batch = page.get_by_role("slider", name="Batch size")
    for _ in range(4):  # from 64, the default, one step down
        if batch.get_attribute("aria-valuetext") == str(BATCH_SIZE):
            break
        batch.press("ArrowLeft")
    assert batch.get_attribute("aria-valuetext") == str(BATCH_SIZE)
    settle(page)  # a click during the rerun that a changed setting causes would be lost
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_role("button", name="Stop", exact=True).wait_for(timeout=60_000)


def train_and_wait(browser, url: str) -> None:
    """Train once in a tab of its own and wait for the saved run (nobody else watching)."""
    page = tab(browser, url)
    visit(page, "train")
    train_in(page)
    page.get_by_text("Saved run").first.wait_for(timeout=600_000)
    page.context.close()


def newest_run_seconds(home: Path) -> float:
    """Return how long the newest saved run's job took, by its own clock (its metadata)."""
    newest = max(home.rglob("metadata.json"), key=lambda path: path.stat().st_mtime)
    return float(json.loads(newest.read_text())["seconds"])


def press_if_shown(button) -> bool:
    """Press the button if the page shows it now, as a person would, and never wait for it: a
    page that has noticed a job folds the settings away, Train with them, and a locator waits
    for them to come back, here at the end of the job (and a second training then started).
    Return whether it was pressed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if not button.is_visible():  # answers at once
        return False
    # Folded away between the look and the press: not pressed, as for a person.
    with contextlib.suppress(PlaywrightTimeout):
        button.click(timeout=PRESS_MS)
        return True
    return False


def saved_runs(home: Path) -> int:
    """Return how many runs the workspace `home` holds."""
    return sum(1 for _ in home.rglob("metadata.json"))


@dataclass(frozen=True)
class Watch:
    """One training started in a tab and watched from others."""

    seconds: float  # from the first tab's settings until every tab showed the saved run
    pressed: bool  # the second visitor's page still showed Train, and they pressed it
    told: bool  # the second visitor's page said a job is running
    watched: bool  # the third page showed the training while it ran


def watched_training(browser, url: str, health: HealthProbe) -> Watch:
    """Open WATCHERS Train tabs; train in the first, press Train in the second too (if it
    shows it), only watch in the third, the health probe asking all the while."""
    tabs = [tab(browser, url) for _ in range(WATCHERS)]
    for page in tabs:
        visit(page, "train")
    trainer = tabs[0]
    for page, pattern in ((tabs[1], TOLD), (tabs[2], WATCHED)):
        record(page, pattern)
    with health:
        start = time.perf_counter()
        train_in(trainer)
        # A second visitor presses Train too (their page may have noticed the job already and
        # folded the settings): told, they watch the same job. A third, who only has the page
        # open, sees it start.
        pressed = press_if_shown(tabs[1].get_by_role("button", name="Train", exact=True))
        for page in tabs:
            page.get_by_text("Saved run").first.wait_for(timeout=600_000)
        seconds = time.perf_counter() - start
    # Asked of the pages' records rather than waited for in turn: by the time the caller got
    # to the third tab, a short job could have ended and its page moved on to the run.
    watch = Watch(seconds, pressed, told=seen(tabs[1], TOLD), watched=seen(tabs[2], WATCHED))
    for page in tabs:
        page.context.close()
    return watch


def captions(page, name: str):
    """Return a locator of the Classify page's results captioned `name`."""
    return page.locator(CAPTION).filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))


def classify_one(page, photo: Path) -> float:
    """Drop `photo` on the open Classify page; return the seconds until its result is drawn
    and the page's run has ended."""
    start = time.perf_counter()
    page.locator('input[type="file"]').set_input_files(str(photo))
    captions(page, photo.name).first.wait_for(timeout=60_000)
    settle(page)
    return time.perf_counter() - start


@dataclass
class Soak:
    """One visitor's classify session: a photo dropped after another."""

    seconds: list[float] = field(default_factory=list)  # each upload's, the warm-up's included
    rss_mb: list[float] = field(default_factory=list)  # the server's, after each upload
    shown_once: list[bool] = field(default_factory=list)  # each upload's result drawn once
    counted: bool = False  # the page said, at the end, how many photos it holds


def classify_session(browser, url: str, photos: list[Path], server) -> Soak:
    """Drop `photos` one after another on one Classify page; note each upload's time, whether
    its result is shown exactly once, and the server's (a psutil process) memory after it."""
    soak = Soak()
    page = tab(browser, url)
    visit(page, "classify")
    for photo in photos:
        soak.seconds.append(classify_one(page, photo))
        soak.shown_once.append(captions(page, photo.name).count() == 1)
        soak.rss_mb.append(server.memory_info().rss / 2**20)
    soak.counted = page.get_by_text(f"{len(photos)} photos, newest first").count() == 1
    page.context.close()
    return soak


def short_visits(browser, url: str, visits: int, server) -> list[float]:
    """Open the Classify page in a new tab and close it, `visits` times; return the server's
    (a psutil process) memory in MB after each."""
    rss_mb = []
    for _ in range(visits):
        page = tab(browser, url)
        visit(page, "classify")
        page.context.close()
        rss_mb.append(server.memory_info().rss / 2**20)
    return rss_mb
