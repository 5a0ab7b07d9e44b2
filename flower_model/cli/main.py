"""The command line's entry point: `flower-lens` or `python -m flower_model`."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from flower_model.cli.parser import build_parser
from flower_model.core.errors import FlowerLensError
from flower_model.core.workspace import describe_failure


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FlowerLensError, ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Run the command line and end the process with its exit code (the console script)."""
    code = main()
    # Everything is written and closed by now. Skip the interpreter's teardown, which tears
    # TensorFlow down object by object for about a second (measured) before the process ends.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
