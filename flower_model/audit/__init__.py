"""The data audit: mislabelled photos, near-duplicates, outliers (cleanlab on features)."""
