"""`python -m bench`: measure, write bench/results.json, print a markdown table."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Before TensorFlow is imported anywhere: its C++ start-up chatter is not a result.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of counts: {text}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure Flower Lens' speed and memory on this machine. The full run "
        "takes about 12 minutes on a 2-core CPU with native bfloat16; --quick about 75 s.",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (proves it works)")
    parser.add_argument(
        "--device",
        action="store_true",
        help="only a short check of this machine's device (a GPU where TensorFlow sees one): "
        "extraction photos/s in float32 and bfloat16, and their agreement (a few minutes)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    parser.add_argument(
        "--sizes", type=_sizes, help="photo counts of the growth series, e.g. 500,1000,2000,4000"
    )
    parser.add_argument(
        "--work", type=Path, help="scratch folder to use and keep (default: a temporary one)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.pop("FLOWER_LENS_WEIGHTS", None)
    from flower_model.service.runtime import start_tensorflow

    start_tensorflow()
    if args.device:
        from bench.device import main as device_main

        return device_main()
    from bench.report import markdown, write_json
    from bench.settings import FULL, QUICK, with_sizes
    from bench.suite import run_suite

    settings = QUICK if args.quick else FULL
    if args.sizes:
        settings = with_sizes(settings, args.sizes)
    work = args.work or Path(tempfile.mkdtemp(prefix="flower-lens-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr)

    try:
        results = run_suite(settings, work, args.quick, progress)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    write_json(results, args.out)
    progress(f"wrote {args.out}")
    print(markdown(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
