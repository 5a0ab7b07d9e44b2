"""`python -m bench.walkthrough --data DIR --home DIR`: a new user's walk through every page in
Chromium on a real `streamlit run` server, with a large dataset chosen: each step's time from
the action to the page drawn (Streamlit's running indicator gone), against the 2 s a page run
may take once the dataset's features are cached, and a screenshot of each page.

A benchmark, not a test: it prints figures. `make bench-scale` leaves a workspace with the
features of its datasets cached (bench/work/scale/home, datasets in bench/work/scale/datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE_RUN_MAX = 2.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.walkthrough", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the dataset folder")
    parser.add_argument("--home", type=Path, required=True, help="the workspace")
    parser.add_argument("--shots", type=Path, default=HERE / "work" / "walkthrough")
    parser.add_argument("--out", type=Path, help="where to write the steps as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from tests.browser.chromium import chromium, no_errors, serve, settle, visit

    args.shots.mkdir(parents=True, exist_ok=True)
    env = {
        "FLOWER_LENS_HOME": str(args.home.resolve()),
        "FLOWER_LENS_DATA": str(args.data.resolve()),
        "FLOWER_LENS_DATA_ROOTS": str(args.data.resolve().parent),
        "FLOWER_LENS_BACKGROUND_FEATURES": "0",
    }
    steps: list[dict] = []
    with serve(env, args.shots / "server.log") as url, chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        page.set_default_timeout(600_000)
        page.base_url = url

        def step(name: str, action: Callable[[], None], page_run: bool = True) -> None:
            started = time.perf_counter()
            action()
            settle(page)
            seconds = time.perf_counter() - started
            no_errors(page)
            steps.append({"step": name, "seconds": seconds, "page_run": page_run})
            verdict = ("yes" if seconds <= PAGE_RUN_MAX else "NO") if page_run else "(a job)"
            print(f"{name:<48} {seconds:6.2f} s  {verdict}", flush=True)

        def shoot(name: str) -> None:
            page.screenshot(path=str(args.shots / f"{name}.png"), full_page=True)

        step("Home, first visit", lambda: visit(page, ""))
        step("Home, again", lambda: visit(page, ""))
        shoot("home")
        step("Explore › Photos, first visit", lambda: visit(page, "explore"))
        step("Explore › Photos, again", lambda: visit(page, "explore"))
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll('[data-testid="stImage"] img'))
                  .every(img => img.complete && img.naturalWidth > 0)"""
        )
        shoot("explore-photos")
        step(
            "Explore › Classes and sizes",
            lambda: page.get_by_role("tab", name="Classes and sizes").click(),
        )
        step(
            "Explore › Feature map, first (map computed)",
            lambda: page.get_by_role("tab", name="Feature map").click(),
            page_run=False,
        )
        page.get_by_text("Each dot is a photo").first.wait_for()
        shoot("explore-map")
        step("Explore › Photos tab", lambda: page.get_by_role("tab", name="Photos").click())
        step(
            "Explore › Feature map, again",
            lambda: page.get_by_role("tab", name="Feature map").click(),
        )
        step("Data issues", lambda: visit(page, "data_issues"))
        shoot("data-issues")
        step("Train", lambda: visit(page, "train"))

        def train() -> None:
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text("Saved run").first.wait_for(timeout=900_000)

        step("Train › a training of 20 epochs, click to saved", train, page_run=False)
        shoot("train")
        step("Train, again", lambda: visit(page, "train"))
        step("Evaluate", lambda: visit(page, "evaluate"))
        shoot("evaluate")

        def cell() -> None:
            point = page.evaluate(
                """() => {
                    const el = Array.from(document.querySelectorAll('.js-plotly-plot'))
                        .find(e => e.data && e.data[0] && e.data[0].type === 'heatmap');
                    const box = el.getBoundingClientRect();
                    const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis;
                    const name = el.data[1].x[0];
                    return {x: box.x + xa._offset + xa.d2p(name),
                            y: box.y + ya._offset + ya.d2p(name), name: name};
                }"""
            )
            page.mouse.click(point["x"], point["y"])
            page.get_by_text(f"{point['name']}, right:").first.wait_for()

        step("Evaluate › a confusion cell's photos", cell)
        shoot("evaluate-cell")
        step("Classify", lambda: visit(page, "classify"))
        photo = next(p for p in sorted(args.data.rglob("*.jpg")))

        def classify() -> None:
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
                str(photo)
            )
            page.locator(".js-plotly-plot").first.wait_for()

        step("Classify › a photo dropped, bars drawn", classify)
        shoot("classify")
    slow = [s for s in steps if s["page_run"] and s["seconds"] > PAGE_RUN_MAX]
    print(
        f"{len(steps) - len(slow)} of {len(steps)} steps within {PAGE_RUN_MAX} s or a job; "
        f"slow: {[s['step'] for s in slow]}"
    )
    if args.out is not None:
        args.out.write_text(json.dumps({"data": str(args.data), "steps": steps}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
