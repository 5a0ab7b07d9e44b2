"""Where runs, feature caches and dataset scans live: one folder, set by one variable."""

from __future__ import annotations

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
