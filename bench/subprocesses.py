"""Running a probe in a fresh Python process and reading its JSON answer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_probe(*args: str) -> tuple[dict, float]:
    """Return a probe's JSON answer and the process's wall-clock seconds, spawn to exit."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.probes", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"probe {args[0]} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1]), seconds
