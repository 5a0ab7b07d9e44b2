"""The command line's entry point: `flower-lens` or `python -m flower_model`."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from flower_model.cli.parser import build_parser
from flower_model.core.cluster import CLUSTER_ENV
from flower_model.core.errors import FlowerLensError
from flower_model.core.workspace import describe_failure


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "cluster", None):
        os.environ[CLUSTER_ENV] = args.cluster
    try:
        return args.func(args)
    except BrokenPipeError:
        return _reader_gone()
    except (FlowerLensError, ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


# The exit code of a process whose reader went away (128 + SIGPIPE), as `cat`'s would be.
READER_GONE = 141


def _reader_gone() -> int:
    """Stop quietly when the output's reader has gone (`flower-lens runs | head`): whatever
    is still buffered goes nowhere, as the Python documentation's note on SIGPIPE advises."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return READER_GONE


def run() -> None:
    """Run the command line and end the process with its exit code (the console script)."""
    code = main()
    # Everything is written and closed by now. Skip the interpreter's teardown, which tears
    # TensorFlow down object by object for about a second (measured) before the process ends.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_gone()
    sys.stderr.flush()
    os._exit(code)
