"""Workspace locks: one process at a time does a piece of work, the others wait or stop, and a
killed holder leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flower_model.core.errors import FlowerLensError, TrainingCancelled
from flower_model.core.locks import holding, is_held, lock_path

pytestmark = pytest.mark.usefixtures("fresh_home")

HOLDER = """
import sys, time
from flower_model.core.locks import holding
with holding(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_elsewhere(what: str, seconds: float) -> subprocess.Popen:
    """Start a process that holds the lock of `what` for `seconds`; return once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, what, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_waits_for_the_first_then_holds_the_lock() -> None:
    holder = hold_elsewhere("features:one", 1.5)
    told: list[str] = []
    started = time.monotonic()
    with holding("features:one", on_wait=lambda: told.append("waiting")) as waited:
        held_after = time.monotonic() - started
        assert waited and told == ["waiting"]
    assert held_after >= 0.5  # it did wait for the holder
    assert holder.wait(timeout=30) == 0
    with holding("features:one") as waited:  # free now: no wait
        assert not waited


def test_a_wait_ends_when_asked_to_stop_or_after_its_timeout() -> None:
    holder = hold_elsewhere("export:run:keras", 60)
    try:
        asked = time.monotonic() + 0.6
        with (
            pytest.raises(TrainingCancelled),
            holding("export:run:keras", cancelled=lambda: time.monotonic() > asked),
        ):
            pass
        with (
            pytest.raises(FlowerLensError, match="try again later"),
            holding("export:run:keras", timeout=0.5),
        ):
            pass
        assert is_held("export:run:keras")
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_killed_holder_leaves_the_lock_free() -> None:
    holder = hold_elsewhere("features:killed", 600)
    assert is_held("features:killed")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert not is_held("features:killed")
    with holding("features:killed", timeout=5) as waited:
        assert not waited


def test_the_lock_is_reentrant_in_a_thread_and_excludes_other_threads() -> None:
    seen: list[bool] = []
    with holding("audit:x"), holding("audit:x") as again:  # nested: no deadlock
        assert not again
        other = threading.Thread(target=lambda: seen.append(is_held("audit:x")))
        other.start()
        other.join(timeout=30)
    assert seen == [True]
    assert not is_held("audit:x")


def test_lock_files_are_named_by_what_they_guard_and_stay_in_the_workspace(
    fresh_home: Path,
) -> None:
    path = lock_path("export:run-1/../../x:keras")
    assert path.parent == fresh_home / "locks"
    assert path.name.startswith("export-") and path.suffix == ".lock"
    assert lock_path("export:a") != lock_path("export:b")
