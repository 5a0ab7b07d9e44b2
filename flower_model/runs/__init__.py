"""Saved training runs: their metadata, the run store, loading a run's model."""
