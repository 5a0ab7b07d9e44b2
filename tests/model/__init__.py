"""Tests of flower_model.model."""
