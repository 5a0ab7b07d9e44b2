"""Errors a user can cause, the workspace folder, a training's events: nothing of the project."""
