"""`python -m flower_model`: the command line."""

import sys

from flower_model.cli import main

sys.exit(main())
