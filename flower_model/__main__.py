"""`python -m flower_model`: the command line."""

import os
import sys

from flower_model.cli.main import main

code = main()
# Everything is written and closed by now. Skip the interpreter's teardown, which tears
# TensorFlow down object by object for about a second (measured) before the process ends.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
