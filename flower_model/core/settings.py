"""The app's settings as a process passes them on: the environment variables that are the app's
settings, sent with each job to the process that runs it (the worker, a cluster's node)."""

from __future__ import annotations

import os

# The environment variables that are the app's settings.
SETTINGS_PREFIXES = ("FLOWER_LENS_", "KERAS_HOME", "KAGGLEHUB_CACHE")


def current_settings() -> dict[str, str]:
    """Return this process's settings."""
    return {k: v for k, v in os.environ.items() if k.startswith(SETTINGS_PREFIXES)}


def apply_settings(settings: dict[str, str]) -> None:
    """Make `settings` this process's settings, and no others."""
    for key in [k for k in os.environ if k.startswith(SETTINGS_PREFIXES)]:
        del os.environ[key]
    os.environ.update(settings)
