"""Tests of flower_model.export."""
