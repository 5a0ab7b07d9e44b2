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
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DEFAULT_OUT = Path(__file__).resolve().parent / "results-cluster.json"
PHOTOS = 384  # timed, per set
REPEATS = 3  # sets timed per engine, the median kept
WARM_UP = 48  # per engine, not timed
CHUNK = 16  # photos per Ray task here: several tasks per node even at this size


@dataclass(frozen=True)
class EngineFigure:
    """One engine's extraction of the timed photos: the median of REPEATS sets."""

    engine: str  # "local", "cluster, 1 node", "cluster, 2 nodes"
    nodes: int
    photos: int  # per set
    seconds: float  # the median set's
    photos_per_s: float
    precision: str
    nodes_used: int
    runs: tuple[float, ...] = ()  # every set's seconds


Photos = tuple[list[Path], list[str]]


def _figure(
    engine: str, nodes: int, sets: list[Photos], runs: list[float], precision: str, used: int
) -> EngineFigure:
    seconds = statistics.median(runs)
    count = len(sets[0][0])
    return EngineFigure(
        engine, nodes, count, seconds, count / seconds, precision, used, tuple(runs)
    )


def _local(warm: Photos, sets: list[Photos], home: Path) -> EngineFigure:
    from flower_model.features.cache import FeatureCache
    from flower_model.features.compute import extract_features
    from flower_model.features.extractor import FeatureExtractor
    from flower_model.model.backbone import build_resnet50, identity_of, resolve_weights

    os.environ["FLOWER_LENS_HOME"] = str(home)
    choice = resolve_weights("none")
    resnet = build_resnet50(choice, seed=42)
    extractor = FeatureExtractor.create(resnet, "auto", identity_of(resnet, choice, 42))
    cache = FeatureCache(extractor.cache_key)
    extract_features(*warm, extractor, cache)
    runs = []
    for paths, hashes in sets:
        started = time.perf_counter()
        extract_features(paths, hashes, extractor, cache)
        runs.append(time.perf_counter() - started)
    return _figure("local", 1, sets, runs, extractor.precision, 1)


def _cluster(warm: Photos, sets: list[Photos], home: Path, nodes: int) -> EngineFigure:
    from ray.cluster_utils import Cluster

    from flower_model.core.cluster import CLUSTER_ENV, disconnect
    from flower_model.features.distributed import CHUNK_ENV, extract_on_cluster
    from flower_model.model.backbone import resolve_weights

    os.environ["FLOWER_LENS_HOME"] = str(home)
    os.environ[CHUNK_ENV] = str(CHUNK)
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    runs, used = [], set()
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=120)
        os.environ[CLUSTER_ENV] = cluster.address
        choice = resolve_weights("none")
        done = extract_on_cluster(*warm, choice)
        for paths, hashes in sets:
            started = time.perf_counter()
            done = extract_on_cluster(paths, hashes, choice)
            runs.append(time.perf_counter() - started)
            used |= done.nodes
    finally:
        disconnect()
        cluster.shutdown()
        os.environ.pop(CLUSTER_ENV, None)
    name = f"cluster, {nodes} node{'s' if nodes > 1 else ''}"
    return _figure(name, nodes, sets, runs, done.stats.precision, len(used))


def table(report: dict) -> str:
    """Return the figures as markdown, each engine beside the local path, with the CPU time
    each photo took (seconds per photo × the CPUs the engine had)."""
    rows = report["engines"]
    local, cores = rows[0], report["cores"]
    local_cpu = local["seconds"] / local["photos"] * cores
    lines = [
        f"Feature extraction, this machine's own path and Ray on 127.0.0.1 (one CPU per node), "
        f"{local['photos']} photos each, measured in one run on {report['machine']} "
        f"({report['measured_at']}):",
        "",
        "| Engine | CPUs | Photos/s (median of 3 sets; range) | Against local | CPU time per "
        "photo | Ray's overhead per photo | Nodes that computed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cpus = cores if row["engine"] == "local" else row["nodes"]
        cpu_time = row["seconds"] / row["photos"] * cpus
        overhead = "—" if row["engine"] == "local" else f"{(cpu_time - local_cpu) * 1000:+.1f} ms"
        lines.append(
            f"| {row['engine']} ({row['precision']}) | {cpus} | {row['photos_per_s']:.1f} "
            f"({_range(row)}) | "
            f"{row['photos_per_s'] / local['photos_per_s']:.2f}× | {cpu_time * 1000:.1f} ms | "
            f"{overhead} | {row['nodes_used']} |"
        )
    lines += [
        "",
        "CPU time per photo: seconds per photo × the CPUs the engine had (the local path has "
        "all of this machine's cores in one process; each node one). Ray's overhead: that, "
        "less the local path's. The two nodes share this machine's cores, so the second node "
        "adds no speed here; on real machines each brings its own.",
    ]
    return "\n".join(lines) + "\n"


def _range(row: dict) -> str:
    rates = [row["photos"] / seconds for seconds in row.get("runs") or [row["seconds"]]]
    return f"{min(rates):.0f}–{max(rates):.0f}"


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
        # Photos of their own per engine and set: none is in any cache.
        made = make_photos(work / f"photos-{number}", WARM_UP + REPEATS * args.photos, seed=number)
        paths, hashes = list(made.paths), list(made.hashes)
        warm = (paths[:WARM_UP], hashes[:WARM_UP])
        sets = [
            (paths[start : start + args.photos], hashes[start : start + args.photos])
            for start in range(WARM_UP, len(paths), args.photos)
        ]
        home = work / f"home-{number}"
        print(
            f"[bench.cluster {time.perf_counter() - started:5.0f} s] {engine}, {nodes} node(s)",
            file=sys.stderr,
        )
        if engine == "local":
            figures.append(_local(warm, sets, home))
        else:
            figures.append(_cluster(warm, sets, home, nodes))
    machine = describe_machine()
    report = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{machine.cpu_model} ({machine.cores} cores)",
        "cores": machine.cores,
        "engines": [asdict(f) for f in figures],
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
