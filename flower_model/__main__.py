"""`python -m flower_model`: the command line."""

from flower_model.cli.main import run

run()
