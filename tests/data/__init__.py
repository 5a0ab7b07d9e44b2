"""Tests of flower_model.data."""
