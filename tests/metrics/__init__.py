"""Tests of flower_model.metrics."""
