"""What the benchmark runs in fresh processes: `python -m bench.probes NAME ...`.

Each probe prints one JSON line on stdout. Only the standard library is imported at the
top, so a probe's own imports are what it measures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def peak_rss_mb() -> float:
    """Return this process's peak resident memory in MiB.

    /proc's VmHWM first: Linux carries ru_maxrss over from the parent across fork and exec,
    so a probe spawned by a large benchmark process would report the benchmark's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def home_import(modules: Sequence[str]) -> dict:
    """Return the seconds importing the modules takes, and whether TensorFlow came along."""
    start = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return {
        "seconds": time.perf_counter() - start,
        "tensorflow_imported": "tensorflow" in sys.modules,
        "peak_rss_mb": peak_rss_mb(),
    }


def cold_start(run_id: str, photo: Path, spawned: float) -> dict:
    """Return seconds from process spawn to the first photo classified by a loaded run."""
    started = time.time()
    import keras  # noqa: F401  (Classifier.load imports it anyway; timed here as its own stage)
    import tensorflow  # noqa: F401

    from flower_model.inference.predict import Classifier

    imported = time.time()
    classifier = Classifier.load(run_id)
    loaded = time.time()
    classifier.classify_one(photo)
    ready = time.time()
    return {
        "interpreter_seconds": started - spawned,
        "import_seconds": imported - started,
        "load_seconds": loaded - imported,
        "first_classify_seconds": ready - loaded,
        "ready_seconds": ready - spawned,
        "peak_rss_mb": peak_rss_mb(),
    }


def train_memory(images: int, epochs: int, batch_size: int) -> dict:
    """Return memory before and at peak of a head training from cached features."""
    import psutil

    from bench.training import measure_head_fit, random_features

    # As in train.py with every feature cached: ResNet50 is not built.
    features, labels = random_features(images)
    before = psutil.Process().memory_info().rss / 2**20
    fit = measure_head_fit(features, labels, epochs, batch_size)
    return {
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "seconds": fit.seconds,
        "epochs": fit.epochs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probes")
    probes = parser.add_subparsers(dest="probe", required=True)
    p = probes.add_parser("home-import")
    p.add_argument("modules", nargs="+")
    p = probes.add_parser("cold-start")
    p.add_argument("--run", required=True)
    p.add_argument("--photo", type=Path, required=True)
    p.add_argument("--spawned", type=float, required=True)
    p = probes.add_parser("train-memory")
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args(argv)
    if args.probe == "home-import":
        result = home_import(args.modules)
    elif args.probe == "cold-start":
        result = cold_start(args.run, args.photo, args.spawned)
    else:
        result = train_memory(args.images, args.epochs, args.batch_size)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
