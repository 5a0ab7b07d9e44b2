"""Tests in Chromium against a served app: every page, many visitors."""
