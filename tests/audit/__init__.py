"""Tests of flower_model.audit."""
