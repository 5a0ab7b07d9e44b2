"""Classify's live view end to end: Chromium's fake camera plays a video of two flower photos
to `streamlit run app.py` over WebRTC; the bars appear, follow the flower in view as a photo
drop names it, and stop with the stream, leaving no thread behind; a video file plays the
same way."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.browser.chromium import (
    chromium,
    no_errors,
    require_browser,
    serve,
    server_process,
    settle,
    visit,
    write_y4m,
)
from tests.conftest import copy_home

require_browser()
SECONDS_EACH = 3.0
TOP = "[data-testid='stHeading'] h3, h3"
RATE = "text=frames classified per second"


def confident_pair(run) -> list[tuple[str, str]]:
    """Return two held-out photos the run names as two different classes, each with the
    widest margin between its top two probabilities: (path, class) each."""
    evaluation = run.metadata.evaluation
    rows = np.asarray(evaluation.probabilities)
    ordered = np.sort(rows, axis=1)
    margins = ordered[:, -1] - ordered[:, -2]
    best: dict[str, tuple[float, str]] = {}
    for path, row, margin in zip(evaluation.paths, rows, margins, strict=True):
        name = run.class_names[int(row.argmax())]
        if margin > best.get(name, (-1.0, ""))[0]:
            best[name] = (float(margin), path)
    chosen = sorted(best.items(), key=lambda item: -item[1][0])[:2]
    return [(path, name) for name, (_, path) in chosen]


@pytest.fixture(scope="module")
def live(sample, sample_dir: Path, warm_template: Path, tmp_path_factory) -> Iterator[dict]:
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    home = tmp_path_factory.mktemp("live") / "home"
    with pytest.MonkeyPatch.context() as patch:
        copy_home(warm_template, home, patch)
        run = train(sample, TrainConfig(epochs=3, batch_size=8, weights="none", patience=0))
    pair = confident_pair(run)
    assert len(pair) == 2, "the run names fewer than two classes among its held-out photos"
    video = write_y4m(
        tmp_path_factory.mktemp("camera") / "flowers.y4m",
        [sample.root / path for path, _ in pair],
        SECONDS_EACH,
    )
    env = {
        "FLOWER_LENS_HOME": str(home),
        "FLOWER_LENS_DATA": str(sample_dir),
        "FLOWER_LENS_BACKGROUND_FEATURES": "0",
    }
    log = tmp_path_factory.mktemp("live-server") / "streamlit.log"
    with serve(env, log) as url, chromium(camera=video) as browser:
        yield {
            "url": url,
            "browser": browser,
            "classes": [name for _, name in pair],
            "video": video,
        }


def open_live(live: dict, mode: str):
    page = live["browser"].new_context(viewport={"width": 1300, "height": 1100}).new_page()
    page.set_default_timeout(120_000)
    page.base_url = live["url"]
    visit(page, "classify")
    page.get_by_text(mode, exact=True).click()
    # The mode's first element: the camera's streamer, or the video's upload box.
    if mode == "Live camera":
        page.locator("iframe[title*='webrtc_streamer']").wait_for()
    else:
        page.get_by_text("A video of flowers").wait_for()
    settle(page)
    return page


def start(page) -> None:
    streamer = page.frame_locator("iframe[title*='webrtc_streamer']")
    streamer.get_by_role("button", name="START").click()
    page.locator(RATE).first.wait_for(timeout=120_000)


def stop(page) -> None:
    streamer = page.frame_locator("iframe[title*='webrtc_streamer']")
    streamer.get_by_role("button", name="STOP").click()
    page.locator(RATE).first.wait_for(state="detached", timeout=60_000)


def tops_seen(page, seconds: float) -> Counter:
    """Return how often each top class was drawn, read every 0.2 s for `seconds`."""
    seen: Counter = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for text in page.locator("h3").all_inner_texts():
            if " · " in text:
                seen[text.split(" · ")[0].rstrip("?")] += 1
        time.sleep(0.2)
    return seen


def test_the_live_bars_follow_the_flower_and_stop_with_the_stream(live) -> None:
    page = open_live(live, "Live camera")
    server = server_process(live["url"])
    start(page)
    # Two passes of the video: each photo is in view for SECONDS_EACH.
    seen = tops_seen(page, 4 * SECONDS_EACH)
    first, second = live["classes"]
    assert seen[first] > 0 and seen[second] > 0, seen
    assert sum(seen[c] for c in (first, second)) >= 0.8 * sum(seen.values()), seen
    caption = page.locator(RATE).first.inner_text()
    assert "frames classified per second" in caption and "ms ago" in caption
    bars = page.locator("[aria-label='probabilities']").first.inner_text()
    assert first in bars and second in bars
    no_errors(page)
    stop(page)
    no_errors(page)
    # A stream's threads end with it: a second stream leaves as many as the first did (the
    # server's own thread pools grow once, on first use, and stay).
    after_first = settled_threads(server)
    start(page)
    stop(page)
    assert settled_threads(server) <= after_first
    no_errors(page)
    page.context.close()


def settled_threads(server, seconds: float = 20.0) -> int:
    """Return the server's thread count once it has stopped falling (or after `seconds`)."""
    count, deadline = server.num_threads(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = server.num_threads()
        if now == count:
            return now
        count = now
    return count


def test_a_video_file_is_classified_as_it_plays(live) -> None:
    page = open_live(live, "A video file")
    page.locator("input[type='file']").set_input_files(str(live["video"]))
    settle(page)
    page.frame_locator("iframe[title*='webrtc_streamer']").get_by_role(
        "button", name="START"
    ).wait_for()
    start(page)
    seen = tops_seen(page, 2 * SECONDS_EACH)
    assert set(live["classes"]) & set(seen), seen
    no_errors(page)
    stop(page)
    page.context.close()
