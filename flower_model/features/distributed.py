"""Feature extraction split over a Ray cluster's workers (when $FLOWER_LENS_CLUSTER is set).

The photos whose features the cache lacks go out in chunks of CHUNK_PHOTOS, one Ray task
each, on one CPU (or one GPU where the cluster has them). A worker process keeps its
ResNet50 between tasks (Ray reuses its processes), so it is loaded once per worker. Each
task writes its photos' features into the workspace's cache, which every node sees, as it
computes them, and skips the photos already there. A worker killed mid-way costs only its
unfinished photos: Ray runs its task again elsewhere, and the cache keeps the first row of a
photo, so nothing is stored twice. Progress counts finished chunks: it never goes back.

Ray's actor pools are not used: on a 2-CPU cluster, actors holding every CPU can leave no
room for other tasks (ray #44687). Every wait here has a timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flower_model.core.cluster import ClusterError, connect
from flower_model.core.errors import FeatureError, TrainingCancelled
from flower_model.core.settings import apply_settings, current_settings
from flower_model.features.cache import ExtractionStats, FeatureCache, cache_key

if TYPE_CHECKING:
    from flower_model.features.extractor import FeatureExtractor
    from flower_model.model.backbone import WeightsChoice

# Photos per task: the most a killed worker's retry computes again ($FLOWER_LENS_CLUSTER_CHUNK).
CHUNK_PHOTOS = 64
CHUNK_ENV = "FLOWER_LENS_CLUSTER_CHUNK"
# Tasks given to the cluster ahead of those running, per worker slot (keeps workers fed).
AHEAD_PER_SLOT = 2
# How many times Ray runs a task again whose worker died.
TASK_RETRIES = 3
# How long one look at the running tasks waits, in seconds (then Stop is looked at).
WAIT_SECONDS = 0.5
# How long loading ResNet50 on a worker may take, in seconds.
PREPARE_SECONDS = 600.0
# With no chunk finished for this long, the cluster is taken as stuck, in seconds.
STALL_SECONDS = 900.0


@dataclass(frozen=True)
class ChunkDone:
    """What one task did: on which node, how many photos it computed of how many."""

    node: str
    computed: int
    photos: int


@dataclass(frozen=True)
class ClusterExtraction:
    """What an extraction on the cluster did."""

    cache: FeatureCache
    identity: str
    stats: ExtractionStats
    nodes: frozenset[str]  # the nodes that computed some photos


def chunk_photos() -> int:
    """Return how many photos one task computes: $FLOWER_LENS_CLUSTER_CHUNK, else CHUNK_PHOTOS."""
    value = os.environ.get(CHUNK_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else CHUNK_PHOTOS


# --- on the cluster's workers --------------------------------------------------------------

_extractors: dict[tuple, FeatureExtractor] = {}  # per worker process: its ResNet50s


def _extractor(choice: WeightsChoice, seed: int, precision: str) -> FeatureExtractor:
    """Return this worker's extractor of these weights and arithmetic, built once."""
    key = (choice, seed, precision)
    if key not in _extractors:
        from flower_model.features.extractor import FeatureExtractor
        from flower_model.model.backbone import build_resnet50, identity_of
        from flower_model.model.devices import prepare_gpus

        prepare_gpus()
        resnet = build_resnet50(choice, seed=seed)
        _extractors[key] = FeatureExtractor.create(
            resnet, precision, identity_of(resnet, choice, seed)
        )
    return _extractors[key]


def _prepare(choice: WeightsChoice, seed: int, precision: str, settings: dict[str, str]):
    """Build ResNet50 on a worker and settle the arithmetic ('auto' is measured once);
    return (the weights' identity, the arithmetic)."""
    apply_settings(settings)
    extractor = _extractor(choice, seed, precision)
    _extractors[(choice, seed, extractor.precision)] = extractor
    return extractor.identity, extractor.precision


def _extract_chunk(
    paths: Sequence[str],
    hashes: Sequence[str],
    choice: WeightsChoice,
    seed: int,
    precision: str,
    identity: str,
    settings: dict[str, str],
    batch_size: int,
) -> ChunkDone:
    """Compute and store the features of the chunk's photos the cache lacks."""
    import ray

    from flower_model.features.compute import extract_features

    apply_settings(settings)
    extractor = _extractor(choice, seed, precision)
    if extractor.identity != identity:
        raise FeatureError(
            f"this node's ResNet50 ({extractor.identity}) differs from the first one's "
            f"({identity}): install the same Flower Lens and weights on every node"
        )
    cache = FeatureCache(extractor.cache_key)
    _, stats = extract_features(
        [Path(p) for p in paths], list(hashes), extractor, cache, batch_size=batch_size
    )
    return ChunkDone(ray.get_runtime_context().get_node_id(), stats.computed, len(hashes))


# --- on the process that asks -------------------------------------------------------------


def extract_on_cluster(
    paths: Sequence[Path],
    hashes: Sequence[str],
    choice: WeightsChoice,
    seed: int = 42,
    precision: str = "auto",
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> ClusterExtraction:
    """Fill the cache with the features of every photo, computed on the cluster's workers."""
    import ray

    started = time.perf_counter()
    phase = on_phase or (lambda message: None)
    info = connect()
    gpu = info.gpus >= 1
    resources = {"num_cpus": 1, "num_gpus": 1} if gpu else {"num_cpus": 1}
    slots = max(1, int(info.gpus if gpu else info.cpus))
    settings = current_settings()
    unit = "GPU" if gpu else "CPU"
    phase(f"loading ResNet50 on the cluster ({info.nodes} node(s), {slots} {unit}(s))")
    # A GPU worker is kept between tasks too (Ray ends one after each task unless told).
    prepare = ray.remote(max_retries=TASK_RETRIES, max_calls=0, **resources)(_prepare)
    try:
        identity, chosen = ray.get(
            prepare.remote(choice, seed, precision, settings), timeout=PREPARE_SECONDS
        )
    except ray.exceptions.GetTimeoutError as exc:
        raise ClusterError(
            f"no worker of the cluster loaded ResNet50 in {PREPARE_SECONDS:.0f} s"
        ) from exc
    cache = FeatureCache.described(cache_key(identity, chosen), choice.label, chosen)
    unique = list(dict.fromkeys(hashes))
    path_of = dict(zip(hashes, (str(p) for p in paths), strict=True))
    held = cache.found(unique)
    todo = [sha for sha, found in zip(unique, held, strict=True) if not found]
    total, done = len(unique), len(unique) - len(todo)
    if progress is not None:
        progress(done, total)
    phase(f"extracting features on the cluster ({chosen})")
    chunk = ray.remote(max_retries=TASK_RETRIES, max_calls=0, **resources)(_extract_chunk)
    size = chunk_photos()
    waiting = [todo[i : i + size] for i in range(0, len(todo), size)][::-1]
    running: list = []
    computed, nodes, last_done = 0, set(), time.monotonic()
    try:
        while waiting or running:
            while waiting and len(running) < slots * AHEAD_PER_SLOT:
                shas = waiting.pop()
                running.append(
                    chunk.remote(
                        [path_of[s] for s in shas], shas, choice, seed, chosen, identity,
                        settings, batch_size,
                    )
                )  # fmt: skip
            ready, running = ray.wait(running, num_returns=1, timeout=WAIT_SECONDS)
            for ref in ready:
                result: ChunkDone = ray.get(ref, timeout=PREPARE_SECONDS)
                computed += result.computed
                done += result.photos
                if result.computed:
                    nodes.add(result.node)
                last_done = time.monotonic()
                if progress is not None:
                    progress(done, total)
            if cancelled is not None and cancelled():
                raise TrainingCancelled("stopped while extracting features on the cluster")
            if time.monotonic() - last_done > STALL_SECONDS:
                raise ClusterError(
                    f"no worker of the cluster finished {size} photos in "
                    f"{STALL_SECONDS:.0f} s: is every node up? (`ray status`)"
                )
    except ray.exceptions.RayTaskError as exc:
        raise FeatureError(f"a worker of the cluster failed: {_first_line(exc)}") from exc
    finally:
        for ref in running:  # stopped or failed: what is left is not computed
            ray.cancel(ref)
    if todo:
        phase(f"{computed} photo(s) computed on {len(nodes)} node(s) of the cluster")
    stats = ExtractionStats(
        total=len(hashes),
        cached=len(hashes) - computed,
        computed=computed,
        seconds=time.perf_counter() - started,
        precision=chosen,
    )
    return ClusterExtraction(cache, identity, stats, frozenset(nodes))


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
