"""Tests of flower_model.cli."""
