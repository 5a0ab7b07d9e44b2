"""`python -m bench.cluster`: feature extraction on this machine's own path, then on a Ray
cluster started on 127.0.0.1 with one node and with two (one CPU each), measured in one run:
photos per second, each as a ratio to the local path, and Ray's overhead per photo. Writes
bench/results-cluster.json and prints the table (`make bench` runs it).

Each engine first extracts a warm-up set (every worker loads its ResNet50 and the arithmetic
is settled), then the timed photos, which no cache holds yet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DEFAULT_OUT = Path(__file__).resolve().parent / "results-cluster.json"
PHOTOS = 384  # timed, per engine
WARM_UP = 48  # per engine, not timed
CHUNK = 16  # photos per Ray task here: several tasks per node even at this size


@dataclass(frozen=True)
class EngineFigure:
    """One engine's extraction of the timed photos."""

    engine: str  # "local", "cluster, 1 node", "cluster, 2 nodes"
    nodes: int
    photos: int
    seconds: float
    photos_per_s: float
    precision: str
    nodes_used: int


def _local(paths: list[Path], hashes: list[str], home: Path) -> EngineFigure:
    from flower_model.features.cache import FeatureCache
    from flower_model.features.compute import extract_features
    from flower_model.features.extractor import FeatureExtractor
    from flower_model.model.backbone import build_resnet50, identity_of, resolve_weights

    os.environ["FLOWER_LENS_HOME"] = str(home)
    choice = resolve_weights("none")
    resnet = build_resnet50(choice, seed=42)
    extractor = FeatureExtractor.create(resnet, "auto", identity_of(resnet, choice, 42))
    cache = FeatureCache(extractor.cache_key)
    extract_features(paths[:WARM_UP], hashes[:WARM_UP], extractor, cache)
    started = time.perf_counter()
    extract_features(paths[WARM_UP:], hashes[WARM_UP:], extractor, cache)
    seconds = time.perf_counter() - started
    count = len(paths) - WARM_UP
    return EngineFigure("local", 1, count, seconds, count / seconds, extractor.precision, 1)


def _cluster(paths: list[Path], hashes: list[str], home: Path, nodes: int) -> EngineFigure:
    from ray.cluster_utils import Cluster

    from flower_model.core.cluster import CLUSTER_ENV, disconnect
    from flower_model.features.distributed import CHUNK_ENV, extract_on_cluster
    from flower_model.model.backbone import resolve_weights

    os.environ["FLOWER_LENS_HOME"] = str(home)
    os.environ[CHUNK_ENV] = str(CHUNK)
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=120)
        os.environ[CLUSTER_ENV] = cluster.address
        choice = resolve_weights("none")
        extract_on_cluster(paths[:WARM_UP], hashes[:WARM_UP], choice)
        started = time.perf_counter()
        done = extract_on_cluster(paths[WARM_UP:], hashes[WARM_UP:], choice)
        seconds = time.perf_counter() - started
    finally:
        disconnect()
        cluster.shutdown()
        os.environ.pop(CLUSTER_ENV, None)
    count = len(paths) - WARM_UP
    name = f"cluster, {nodes} node{'s' if nodes > 1 else ''}"
    return EngineFigure(
        name, nodes, count, seconds, count / seconds, done.stats.precision, len(done.nodes)
    )


def table(report: dict) -> str:
    """Return the figures as markdown, each engine beside the local path."""
    rows = report["engines"]
    local = rows[0]
    lines = [
        f"Feature extraction, local path and Ray on 127.0.0.1 (one CPU per node), "
        f"{local['photos']} photos each, measured in one run on {report['machine']} "
        f"({report['measured_at']}):",
        "",
        "| Engine | Photos/s | Against local | Seconds per photo | Overhead per photo | "
        "Nodes that computed |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_photo = row["seconds"] / row["photos"]
        local_per_photo = local["seconds"] / local["photos"]
        overhead = per_photo * row["nodes"] - local_per_photo if row["engine"] != "local" else 0.0
        lines.append(
            f"| {row['engine']} ({row['precision']}) | {row['photos_per_s']:.1f} | "
            f"{row['photos_per_s'] / local['photos_per_s']:.2f}× | {per_photo * 1000:.0f} ms | "
            + (f"{overhead * 1000:+.0f} ms per CPU" if row["engine"] != "local" else "—")
            + f" | {row['nodes_used']} |"
        )
    lines += [
        "",
        "Overhead per photo: a cluster's seconds per photo times its CPUs, less the local "
        "path's (which has both of this machine's cores): what one CPU of a cluster costs "
        "per photo beyond the local path.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--photos", type=int, default=PHOTOS, help="timed photos per engine")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print(
            "bench.cluster: Ray is not installed (pip install -r requirements.txt)", file=sys.stderr
        )
        return 1
    from bench.machine import describe_machine
    from bench.photos import make_photos
    from flower_model.service.runtime import start_tensorflow

    start_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="flower-lens-cluster-bench-"))
    started = time.perf_counter()
    figures = []
    for number, (engine, nodes) in enumerate((("local", 1), ("cluster", 1), ("cluster", 2))):
        # Photos of their own per engine: none is in any cache.
        photos = make_photos(work / f"photos-{number}", WARM_UP + args.photos, seed=number)
        paths, hashes = list(photos.paths), list(photos.hashes)
        home = work / f"home-{number}"
        print(
            f"[bench.cluster {time.perf_counter() - started:5.0f} s] {engine}, {nodes} node(s)",
            file=sys.stderr,
        )
        if engine == "local":
            figures.append(_local(paths, hashes, home))
        else:
            figures.append(_cluster(paths, hashes, home, nodes))
    machine = describe_machine()
    report = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{machine.cpu_model} ({machine.cores} cores)",
        "engines": [asdict(f) for f in figures],
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
