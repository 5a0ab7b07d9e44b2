"""The jobs journal: what a server had running or waiting is found after it is gone, once,
and never while it lives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flower_model.service.journal import Asked, Journal, left_behind
from tests.conftest import REPO


def asked(kind: str = "training", at: float = 100.0) -> Asked:
    return Asked(kind, "/photos/flowers", "f" * 16, at, {"config": {"epochs": 7}}, "ana")


def test_a_living_servers_jobs_are_not_taken(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.add("job-1", asked())
    assert left_behind(tmp_path) == []  # another board starting beside it (a replica)
    journal.remove("job-1")
    journal.close()
    assert list(tmp_path.iterdir()) == []  # a clean end leaves nothing


def test_a_dead_servers_unfinished_jobs_are_found_once_oldest_first(tmp_path: Path) -> None:
    # A server process with two jobs asked for, one ended, killed with another still waiting.
    code = (
        "import os, sys\n"
        "from flower_model.service.journal import Asked, Journal\n"
        "journal = Journal(__import__('pathlib').Path(sys.argv[1]))\n"
        "for number, at in ((1, 300.0), (2, 200.0), (3, 250.0)):\n"
        "    journal.add(f'job-{number}', Asked('training', '/p', 'f', at, {'n': number}))\n"
        "journal.remove('job-3')\n"
        "os._exit(9)\n"  # no clean end: what a kill -9 or a power cut leaves
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, timeout=60)
    assert done.returncode == 9
    found = left_behind(tmp_path)
    assert [a.settings for a in found] == [{"n": 2}, {"n": 1}]
    assert left_behind(tmp_path) == []  # found once: the journal is removed


def test_a_request_survives_its_journal_unchanged(tmp_path: Path) -> None:
    request = asked()
    journal = Journal(tmp_path)
    journal.add("job-1", request)
    assert Asked.from_json(json.loads(journal.path.read_text())["job-1"]) == request


def test_an_unwritable_journal_does_not_stop_the_jobs(tmp_path: Path) -> None:
    blocked = tmp_path / "a file where the folder should be"
    blocked.write_text("")
    journal = Journal(blocked)  # cannot be made: a warning, no exception
    journal.add("job-1", asked())
    journal.remove("job-1")
    assert left_behind(blocked) == []
