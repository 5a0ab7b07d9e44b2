"""Delete what a person no longer wants, with everything kept because of it."""

from __future__ import annotations

from flower_model.export.exporter import forget_app_exports
from flower_model.runs.store import delete_run


def remove_run(run_id: str, owner: str | None = None) -> None:
    """Delete a saved run and the app's exports of it: with an `owner` (a visitor), only if
    they trained it (None: the host); raise RunError saying why not, before anything goes."""
    delete_run(run_id, owner=owner)
    forget_app_exports(run_id)
