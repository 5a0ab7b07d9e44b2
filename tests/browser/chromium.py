"""What the browser tests share: the system Chromium, a real `streamlit run` server, and
waiting for a page to finish drawing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO

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


def require_browser():
    """Return Playwright's sync API, or skip the calling test module if there is no browser."""
    api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(
            "no browser: install Debian's chromium (make browser) to run the browser tests",
            allow_module_level=True,
        )
    return api


# How long a test waits for a server it started to answer its health check.
SERVER_START_SECONDS = 240

# The servers a test starts listen on 127.0.0.1: asked directly, never through a proxy that
# the environment names (urlopen's own opener takes the proxies of the first call in the
# process, which may be a test's refusing one).
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ask(url: str, timeout: float) -> bytes:
    """Return the body of a GET of `url` on this machine, asked directly."""
    with DIRECT.open(url, timeout=timeout) as response:
        return response.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    env: dict[str, str], log: Path, port: int | None = None, options: Sequence[str] = ()
) -> Iterator[str]:
    """Run `streamlit run app.py` on a localhost port (a free one unless given), with more
    Streamlit `options` if any; yield its address once healthy."""
    port = port or free_port()
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
                *options,
            ],
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # Generous: on a busy 2-core machine (a Ray cluster and TensorFlow in the other test
        # worker) a server took over 60 s to answer its first health check.
        deadline = time.time() + SERVER_START_SECONDS
        answer: object = "no answer yet"
        while True:
            try:
                answer = ask(f"{url}/_stcore/health", timeout=10)
                if answer == b"ok":
                    break
            except OSError as exc:  # refused, timed out, or an HTTP error such as 503
                answer = exc
            assert process.poll() is None, log.read_text()
            assert time.time() < deadline, (
                f"the server did not come up (its health check's last answer: {answer!r}):\n"
                f"{log.read_text()}"
            )
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def visit(page, path: str) -> None:
    """Open a page of the app and wait until it has finished drawing."""
    page.goto(f"{page.base_url}/{path}")
    page.wait_for_selector("h1")
    settle(page)


def settle(page) -> None:
    """Wait until the page's script has finished its run (after a widget changed, say)."""
    # Streamlit shows a running indicator while it works, and grey skeletons where elements
    # are still to come.
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
              && !document.querySelector('[data-testid="stSkeleton"]')""",
        timeout=60_000,
    )


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.content()[:2000]


def plotly_bars(page) -> list[list[str]]:
    """Return the class names of each horizontal bar chart (softmax bars) on the page."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
              .filter(el => el.data && el.data[0] && el.data[0].orientation === 'h')
              .map(el => Array.from(el.data[0].y))"""
    )


def server_process(url: str):
    """Return the psutil process of the server this test process started for `url`."""
    import psutil

    port = url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        command = child.cmdline()
        if "streamlit" in command and port in command:
            return child
    raise LookupError(f"no server of this test on port {port}")


@contextmanager
def chromium(camera: Path | None = None) -> Iterator:
    """Launch the system Chromium headless through Playwright; close it afterwards. With a
    `camera` (a .y4m video, `write_y4m`), the browser's camera plays it, granted unasked."""
    api = require_browser()
    args = list(CHROMIUM_ARGS)
    if camera is not None:
        args += [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        ]
    with api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield browser
        browser.close()


def write_y4m(
    path: Path, photos: list[Path], seconds_each: float, fps: int = 15, size=(320, 240)
) -> Path:
    """Write a raw video (YUV4MPEG2, 4:2:0) of each photo held still for `seconds_each`, in
    turn: what Chromium's fake camera plays (looping) for a test of the live view."""
    from PIL import Image

    width, height = size
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for photo in photos:
            rgb = Image.open(photo).convert("RGB").resize(size)
            y, u, v = rgb.convert("YCbCr").split()
            planes = (
                y.tobytes()
                + u.resize((width // 2, height // 2)).tobytes()
                + v.resize((width // 2, height // 2)).tobytes()
            )
            for _ in range(round(seconds_each * fps)):
                out.write(b"FRAME\n" + planes)
    return path
