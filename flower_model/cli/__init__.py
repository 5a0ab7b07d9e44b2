"""The command line: `flower-lens` or `python -m flower_model`."""
