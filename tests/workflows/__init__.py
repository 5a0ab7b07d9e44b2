"""Tests of flower_model.workflows."""
