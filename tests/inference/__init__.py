"""Tests of flower_model.inference."""
