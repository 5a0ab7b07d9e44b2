"""Scores of held-out predictions: accuracy, per-class metrics, confusion, calibration."""
