"""Tests of flower_model.core."""
