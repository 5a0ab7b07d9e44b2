"""Tests of flower_model.ui."""
