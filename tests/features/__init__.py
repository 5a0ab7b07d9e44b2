"""Tests of flower_model.features."""
