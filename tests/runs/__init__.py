"""Tests of flower_model.runs."""
