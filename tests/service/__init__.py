"""Tests of flower_model.service."""
