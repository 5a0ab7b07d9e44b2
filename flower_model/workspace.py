"""Where runs, feature caches and dataset scans live: one folder, set by one variable."""

from __future__ import annotations

import json
import os
from pathlib import Path

HOME_ENV = "FLOWER_LENS_HOME"
DEFAULT_HOME = Path(__file__).resolve().parent.parent / "workspace"


def home_dir() -> Path:
    """Return the workspace folder: $FLOWER_LENS_HOME, or `workspace/` beside the package."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def runs_dir() -> Path:
    """Return the folder holding one sub-folder per training run."""
    return home_dir() / "runs"


def features_dir() -> Path:
    """Return the folder of the on-disk feature cache."""
    return home_dir() / "features"


def scans_dir() -> Path:
    """Return the folder of cached dataset scans."""
    return home_dir() / "scans"


def _settings_file() -> Path:
    return home_dir() / "settings.json"


def last_dataset() -> Path | None:
    """Return the dataset folder used last time, if it was remembered."""
    try:
        value = json.loads(_settings_file().read_text()).get("dataset")
    except (OSError, ValueError):
        return None
    return Path(value) if value else None


def remember_dataset(path: Path) -> None:
    """Remember a dataset folder for next time."""
    target = _settings_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".settings.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"dataset": str(path)}))
    os.replace(tmp, target)
