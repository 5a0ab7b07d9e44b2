"""Training as a person starts it: `python -m flower_model train` in a fresh process on a folder
of photos, first with an empty workspace (cold: the scan, ResNet50, every photo's features),
then again (warm: every feature cached); and the same warm training in a process that has
trained before, as the app's worker does after a click on Train."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.photos import PhotoSet
from bench.subprocesses import REPO
from flower_model.core import workspace
from flower_model.core.workspace import HOME_ENV


@dataclass(frozen=True)
class CliTraining:
    """One `train` command, spawn to exit, with the moment each line it printed appeared."""

    seconds: float
    lines: tuple[tuple[float, str], ...]  # (seconds since spawn, line)
    run_bytes: int  # the run folder it saved

    def first(self, prefix: str) -> float | None:
        """Return when the first line starting with `prefix` appeared."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)


@dataclass(frozen=True)
class Retrain:
    """A cold and a warm command-line training of the same photos, and a warm one in-process."""

    photos: int
    epochs: int
    cold: CliTraining
    warm: CliTraining
    in_process_seconds: float  # train() on cached features in a process that trained before


def link_photos(photos: PhotoSet, count: int, folder: Path) -> Path:
    """Return a dataset folder of the first `count` photos, linked, not copied."""
    for path in photos.paths[:count]:
        target = folder / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(path, target)
    return folder


def cli_training(data: Path, home: Path, epochs: int) -> CliTraining:
    """Return one `python -m flower_model train` on random weights, every epoch run."""
    command = [
        sys.executable, "-m", "flower_model", "train", "--data", str(data),
        "--weights", "none", "--epochs", str(epochs), "--patience", "0",
    ]  # fmt: skip
    env = {**os.environ, HOME_ENV: str(home)}
    runs = home / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in process.stdout or ():
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    code = process.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(line for _, line in lines[-10:])
        raise RuntimeError(f"train failed (exit {code}):\n{tail}")
    (saved,) = set(runs.iterdir()) - before
    return CliTraining(seconds, tuple(lines), workspace.bytes_under(saved))


def in_process_training(data: Path, home: Path, epochs: int) -> float:
    """Return the seconds of `train()` on cached features, the second time in this process."""
    from flower_model.data.dataset import scan_dataset
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    previous = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(home)
    try:
        config = TrainConfig(epochs=epochs, weights="none", patience=0)
        dataset = scan_dataset(data)  # the page has it before the click
        train(dataset, config)  # as the worker has trained before
        start = time.perf_counter()
        train(dataset, config)
        return time.perf_counter() - start
    finally:
        if previous is not None:
            os.environ[HOME_ENV] = previous


def measure_retrain(photos: PhotoSet, count: int, work: Path, epochs: int) -> Retrain:
    """Return the cold and warm trainings of `count` photos, in a workspace of their own."""
    data = link_photos(photos, count, work / "retrain-photos")
    home = work / "retrain-home"
    cold = cli_training(data, home, epochs)
    warm = cli_training(data, home, epochs)
    return Retrain(count, epochs, cold, warm, in_process_training(data, home, epochs))
