"""`python -m bench.scale` (`make bench-scale`): every stage's time, time per photo and peak
memory at 4,000, 20,000 and 100,000 photos, each figure beside its target; writes
bench/results-scale.json and prints the table.

The photos are generated once into the work folder (kept between runs: about 1.6 GB for
100,000) at the Kaggle photos' typical size, each with its own content. Each size is a folder
of hard links to the first N photos, measured in a process of its own, all sizes sharing one
workspace: its features are extracted through ResNet50 (random weights; speed does not
depend on their values) up to `--extract` photos, and the bench writes class-shaped features
into the cache for the photos beyond (said so in the table), so that the stages after
extraction run on a full cache. Each stage's peak memory is the process's peak resident
memory during that stage (Linux's VmHWM, reset between stages), TensorFlow included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / "work" / "scale"
DEFAULT_OUT = HERE / "results-scale.json"
SIZES = (4000, 20_000, 100_000)
EXTRACT = 20_000  # photos whose features ResNet50 computes; the bench writes the rest
NEW_SHARE = 0.01  # the rescan: this share of photos added to the folder
RUNS_LISTED = 100  # saved runs when the pages and the run list are timed
TARGETS = {
    "per_photo_growth_max": 1.3,  # seconds per photo at the largest size / at the smallest
    "peak_rss_mb_max": 4096.0,
    "map_seconds_max": 60.0,
    "page_seconds_max": 2.0,
    "disk_ratio_max": 1.2,  # feature cache and scans / the float16 features
}


# --- photos -----------------------------------------------------------------------------


def _write_chunk(folder: str, start: int, stop: int, seed: int) -> int:
    import numpy as np

    from flower_model.data.synthetic import CLASSES, COLOURS, PHOTO_SIZE, flower_photo

    for i in range(start, stop):
        name = CLASSES[i % len(CLASSES)]
        path = Path(folder) / name / f"{name}_{i:06d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            image = flower_photo(np.random.default_rng([seed, i]), COLOURS[name], PHOTO_SIZE)
            # Written whole or not at all: a run stopped here leaves no half photo behind.
            partial = path.with_suffix(".partial")
            image.save(partial, format="JPEG", quality=85)
            os.replace(partial, path)
    return stop - start


def photo_path(folder: Path, i: int) -> Path:
    from flower_model.data.synthetic import CLASSES

    name = CLASSES[i % len(CLASSES)]
    return folder / name / f"{name}_{i:06d}.jpg"


def ensure_photos(folder: Path, count: int, progress: Callable[[str], None]) -> None:
    """Generate photos 0..count-1 that are not on disk yet, on every core."""
    missing = [
        i for i in range(0, count, 1000) if not photo_path(folder, min(i + 999, count - 1)).exists()
    ]
    if not missing:
        return
    progress(f"generating up to {count:,} photos into {folder} (kept for the next run)")
    chunks = [(str(folder), i, min(i + 1000, count), 0) for i in missing]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = 0
        for written in pool.map(_write_chunk, *zip(*chunks, strict=True)):
            done += written
            if done % 10_000 < 1000:
                progress(f"  {done:,} of {len(chunks) * 1000:,} photos written")


def link_dataset(photos: Path, folder: Path, count: int) -> None:
    """Make `folder` a dataset of the first `count` photos, hard-linked (no more, no fewer)."""
    from flower_model.data.synthetic import CLASSES

    wanted = {photo_path(folder, i).relative_to(folder): i for i in range(count)}
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for link in (folder / name).iterdir():
            if link.relative_to(folder) not in wanted:
                link.unlink()
    for relative, i in wanted.items():
        link = folder / relative
        if not link.exists():
            # A hard link: to the scan and the app, a photo file like any other (a symbolic
            # link would cost each listing a resolve, which real photo folders do not).
            os.link(photo_path(photos, i), link)


# --- memory -----------------------------------------------------------------------------


def reset_peak() -> None:
    """Start measuring this process's peak resident memory afresh (Linux)."""
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")


def peak_mb() -> float:
    """Return this process's peak resident memory since the last reset, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Stages:
    """Each stage's seconds and peak memory, the stages timed one after another."""

    def __init__(self) -> None:
        self.figures: dict[str, dict] = {}
        self._name: str | None = None
        self._started = 0.0

    def start(self, name: str) -> None:
        self.stop()
        reset_peak()
        self._name, self._started = name, time.perf_counter()

    def stop(self, **extra: object) -> None:
        if self._name is not None:
            seconds = time.perf_counter() - self._started
            self.figures[self._name] = {"seconds": seconds, "peak_mb": peak_mb(), **extra}
        self._name = None

    def note(self, name: str, **extra: object) -> None:
        self.figures.setdefault(name, {}).update(extra)


# --- one size, in a process of its own --------------------------------------------------


def bench_features(count: int, labels: Sequence[int], seed: int = 0):
    """Return features shaped like ResNet50's pooled output, each class around its own mean."""
    import numpy as np

    from flower_model.model.backbone import FEATURE_DIM

    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 0.5, (5, FEATURE_DIM)).astype(np.float32)
    noise = rng.gamma(2.0, 0.5, (count, FEATURE_DIM)).astype(np.float32)
    return np.maximum(means[np.asarray(labels) % 5] + noise - 1.0, 0.0)


def measure_size(folder: Path, photos: Path, size: int, extract: int) -> dict:
    """Measure every stage on the dataset in `folder` (links to the first `size` photos)."""
    from flower_model.data.dataset import scan_dataset
    from flower_model.features.cache import FeatureCache, cache_key
    from flower_model.features.extraction import dataset_features
    from flower_model.model.backbone import WeightsChoice, known_identity
    from flower_model.model.precision import known_precision

    stages = Stages()
    new = max(1, round(size * NEW_SHARE))
    link_dataset(photos, folder, size - new)
    stages.start("scan")
    scan_dataset(folder)
    stages.stop(photos=size - new)
    link_dataset(photos, folder, size)
    stages.start("rescan")
    read: list[int] = []
    dataset = scan_dataset(folder, progress=lambda done, total: read.append(total))
    stages.stop(photos=size, read=max(read, default=0))

    # Features: ResNet50 on the photos up to `extract`, the bench's for the rest.
    identity = known_identity(WeightsChoice("none"), 42)
    written = 0
    if size > extract and identity is not None:
        chosen = known_precision("auto", identity)
        cache = FeatureCache(cache_key(identity, chosen or "float32"))
        # The photos past the first `extract` (by their number), whose features are not
        # in the cache yet: their rows are the bench's.
        late = [r for r in dataset.records if int(Path(r.path).stem.rsplit("_", 1)[1]) >= extract]
        held = cache.found([r.sha256 for r in late])
        beyond = [r for r, found in zip(late, held, strict=True) if not found]
        hashes = [r.sha256 for r in beyond]
        for start in range(0, len(beyond), 5000):
            part = beyond[start : start + 5000]
            rows = bench_features(len(part), [r.label for r in part], seed=start)
            cache.put_many(hashes[start : start + 5000], rows)
        written = len(beyond)
    stages.start("extraction")
    computed = dataset_features(dataset, "none", 42, "auto", batch_size=64)
    stages.stop(
        photos=size,
        computed=computed.stats.computed,
        cached=computed.stats.cached,
        written_by_bench=written,
        precision=computed.stats.precision,
    )
    cache = FeatureCache(computed.cache_key)
    float16_bytes = cache.count() * 2048 * 2
    del computed

    run_id = train_stages(dataset, stages)
    audit_stage(dataset, stages)
    map_stage(dataset, cache, stages)
    runs_stage(run_id, stages)
    pages_stage(folder, stages)
    from flower_model.data import scans as scan_store

    scans = scan_store.bytes_used(scan_store.store_of(dataset.root))
    stages.note(
        "disk",
        cache_bytes=cache.bytes_used(),
        scans_bytes=scans,
        float16_bytes=float16_bytes,
        ratio=(cache.bytes_used() + scans) / float16_bytes,
    )
    return {"size": size, "stages": stages.figures, "new_share": NEW_SHARE}


def train_stages(dataset, stages: Stages) -> str:
    """Train as the app does (features cached): split, head fit, evaluation, saving."""
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    marks: list[tuple[str, float, float]] = []  # (what begins, when, the peak before it)
    boundaries = {
        "keeping duplicates": "split",
        "training the head": "fit",
        "saving the run": "save",
    }

    def on_event(event) -> None:
        now = time.perf_counter()
        message = event.message or ""
        begins = next(
            (stage for text, stage in boundaries.items() if message.startswith(text)), None
        )
        if event.kind == "epoch" and event.epoch == config.epochs:
            begins = "evaluation"
        if event.kind == "end":
            begins = "end"
        if begins is not None:
            marks.append((begins, now, peak_mb()))
            reset_peak()

    config = TrainConfig(weights="none", epochs=20, patience=0)
    stages.start("training")
    started = time.perf_counter()
    info = train(dataset, config, on_event=on_event)
    stages.stop(run_id=info.run_id)
    order = [name for name, _, _ in marks]
    for (name, at, _), (_, until, peak) in zip(marks, marks[1:], strict=False):
        stages.figures[name] = {
            "seconds": until - at,
            "peak_mb": peak,
            "photos": len(dataset.records),
        }
    stages.note("training", order=order, total_seconds=time.perf_counter() - started)
    return info.run_id


def audit_stage(dataset, stages: Stages) -> None:
    from flower_model.audit.findings import audit_dataset

    stages.start("audit")
    audit = audit_dataset(dataset, "none", again=True)
    stages.stop(
        photos=len(dataset.records),
        label_issues=len(audit.label_issues),
        outliers=len(audit.outliers),
        duplicate_groups=len(audit.duplicates),
    )


def map_stage(dataset, cache, stages: Stages) -> None:
    from flower_model.features.embedding import feature_map

    hashes = [r.sha256 for r in dataset.records]
    for method in ("PCA", "t-SNE"):
        stages.start(f"map {method}")
        drawn = feature_map(cache, hashes, method)
        stages.stop(photos=len(hashes), points=len(drawn.rows), sampled=drawn.sampled)


def runs_stage(run_id: str, stages: Stages) -> None:
    """List RUNS_LISTED saved runs (copies of this size's run): first without the runs'
    index, as a server after an upgrade, then as every page does."""
    from flower_model.core.workspace import runs_dir
    from flower_model.runs.index import INDEX_FILE
    from flower_model.runs.store import scan_runs

    root = runs_dir()
    for old in root.iterdir():  # the runs of the sizes measured before
        if old.is_dir() and old.name != run_id:
            shutil.rmtree(old)
    for i in range(RUNS_LISTED - 1):
        shutil.copytree(root / run_id, root / f"{run_id[:-4]}c{i:03d}")
    (root / INDEX_FILE).unlink(missing_ok=True)
    stages.start("run list, no index")
    runs, _ = scan_runs()
    stages.stop(runs=len(runs))
    stages.start("run list")
    runs, _ = scan_runs()
    stages.stop(runs=len(runs))


# Each page with the session key of its tabs and the tabs timed (only the open one is drawn).
PAGES = {
    "pages/home.py": ("", ()),
    "pages/explore.py": ("explore-view", ("Photos", "Classes and sizes", "Feature map")),
    "pages/data_issues.py": ("", ()),
    "pages/train.py": ("", ()),
    "pages/evaluate.py": ("evaluate-view", ("This run", "Export", "Compare runs")),
    "pages/classify.py": ("", ()),
}
PAGE_RUNS = 3  # page runs timed after the first, the median kept


def pages_stage(folder: Path, stages: Stages) -> None:
    """Time each page's run in Streamlit's AppTest, the dataset chosen, RUNS_LISTED runs
    saved: the first run, and the median of the next (what every click costs)."""
    import statistics

    from streamlit.testing.v1 import AppTest

    os.environ["FLOWER_LENS_DATA"] = str(folder)
    os.environ["FLOWER_LENS_DATA_ROOTS"] = str(folder.parent.parent)
    os.environ["FLOWER_LENS_BACKGROUND_FEATURES"] = "0"
    app_file = str(HERE.parent / "app.py")
    for page, (tab_key, tabs) in PAGES.items():
        for tab in tabs or (None,):
            app = AppTest.from_file(app_file, default_timeout=900)
            app.run()
            name = page.split("/")[1][:-3] + (f" › {tab}" if tab else "")
            stages.start(f"page {name}")
            opened = time.perf_counter()
            if page != "pages/home.py":
                app.switch_page(page)
            if tab is not None:
                app.session_state[tab_key] = tab
            app.run()
            first = time.perf_counter()
            seconds = []
            for _ in range(PAGE_RUNS):
                started = time.perf_counter()
                app.run()
                seconds.append(time.perf_counter() - started)
            problems = [str(e.value)[:200] for e in app.exception]
            stages.stop(
                first_seconds=first - opened,
                runs=seconds,
                median=statistics.median(seconds),
                exceptions=problems,
            )


# --- the whole bench --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="photo counts")
    parser.add_argument("--extract", type=int, default=EXTRACT, help="photos through ResNet50")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="photos and workspace")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    photos, home = args.work / "photos", args.work / "home"
    if args.child is not None:
        os.environ["FLOWER_LENS_HOME"] = str(home)
        from flower_model.service.runtime import start_tensorflow

        start_tensorflow()
        figures = measure_size(
            args.work / "datasets" / str(args.child), photos, args.child, args.extract
        )
        print(json.dumps(figures))
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(","))
    started = time.perf_counter()
    measured_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def progress(message: str) -> None:
        print(f"[bench.scale {time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr)

    largest = max(sizes)
    ensure_photos(photos, largest + max(1, round(largest * NEW_SHARE)), progress)
    shutil.rmtree(home, ignore_errors=True)  # every run starts from an empty workspace
    results = []
    for size in sizes:
        progress(f"{size:,} photos")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.scale",
                "--child",
                str(size),
                "--work",
                str(args.work),
                "--extract",
                str(args.extract),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "FLOWER_LENS_HOME": str(home)},
        )
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    from dataclasses import asdict

    from bench.machine import describe_machine

    report = {
        "measured_at": measured_at,
        "machine": asdict(describe_machine()),
        "seconds": time.perf_counter() - started,
        "extract": args.extract,
        "sizes": results,
        "targets": TARGETS,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    progress(f"wrote {args.out}")
    print(table(report), end="")
    return 0


STAGES = (
    "scan", "rescan", "extraction", "split", "fit", "evaluation", "save", "audit",
    "map PCA", "map t-SNE",
)  # fmt: skip


def table(report: dict) -> str:
    """Return the figures as markdown: per stage, seconds and peak memory at each size, time
    per photo at the largest size over the smallest, each beside its target."""
    sizes = report["sizes"]
    small, large = sizes[0], sizes[-1]
    t = report["targets"]
    head = " | ".join(f"{s['size']:,} photos: s · s/photo · peak MiB" for s in sizes)
    pages_head = " | ".join(f"{s['size']:,} photos" for s in sizes)
    growth_target, peak_target = t["per_photo_growth_max"], t["peak_rss_mb_max"]
    lines = [
        f"| Stage | {head} | per photo {large['size']:,} / {small['size']:,} "
        f"(≤ {growth_target}) | peak (≤ {peak_target:,.0f} MiB) |",
        "|---|" + "---|" * (len(sizes) + 2),
    ]
    for stage in STAGES:
        cells = []
        for s in sizes:
            f = s["stages"].get(stage)
            if f is None or "seconds" not in f:
                cells.append("–")
                continue
            per = f["seconds"] / max(1, _photos(stage, f, s["size"]))
            cells.append(f"{f['seconds']:.2f} · {per * 1000:.3f} ms · {f['peak_mb']:,.0f}")
        last = large
        if stage == "extraction":  # per photo through ResNet50: the largest size that ran it
            last = next((s for s in reversed(sizes) if s["stages"][stage].get("computed")), large)
        a, b = small["stages"].get(stage), last["stages"].get(stage)
        if a and b and "seconds" in a and "seconds" in b and last is not small:
            ratio = (b["seconds"] / _photos(stage, b, last["size"])) / (
                a["seconds"] / _photos(stage, a, small["size"])
            )
            growth = f"{ratio:.2f} {'yes' if ratio <= t['per_photo_growth_max'] else '**no**'}"
            if last is not large:
                growth += f" (at {last['size']:,}: ResNet50 ran on no more)"
        else:
            growth = "–"
        peak = max(s["stages"].get(stage, {}).get("peak_mb", 0) for s in sizes)
        met = "yes" if peak <= peak_target else "**no**"
        lines.append(f"| {stage} | {' | '.join(cells)} | {growth} | {peak:,.0f} {met} |")
    lines += [
        "",
        f"| Page run (median of the runs after the first) | {pages_head} | ≤ "
        f"{t['page_seconds_max']} s |",
        "|---|" + "---|" * (len(sizes) + 1),
    ]
    names = [name for name in large["stages"] if name.startswith("page ")]
    for name in names:
        cells, worst = [], 0.0
        for s in sizes:
            f = s["stages"].get(name)
            if f is None:
                cells.append("–")
                continue
            worst = max(worst, f["median"])
            broken = " (**exception**)" if f["exceptions"] else ""
            cells.append(f"{f['median']:.2f} s (first {f['first_seconds']:.1f} s){broken}")
        met = "yes" if worst <= t["page_seconds_max"] else "**no**"
        lines.append(f"| {name[5:]} | {' | '.join(cells)} | {met} |")
    for name in ("run list, no index", "run list"):
        cells = [
            f"{s['stages'][name]['seconds']:.2f} s" if name in s["stages"] else "–" for s in sizes
        ]
        lines.append(f"| {name} ({RUNS_LISTED} runs) | {' | '.join(cells)} | |")
    notes = []
    for s in sizes:
        ex = s["stages"]["extraction"]
        notes.append(
            f"- {s['size']:,} photos: ResNet50 computed {ex['computed']:,} features "
            f"({ex['precision']}), {ex['cached']:,} came from the cache"
            + (
                f", {ex['written_by_bench']:,} of them written by the bench"
                if ex["written_by_bench"]
                else ""
            )
            + f"; the rescan read {s['stages']['rescan']['read']:,} new photos; disk "
            f"{s['stages']['disk']['ratio']:.3f}× the float16 features (≤ {t['disk_ratio_max']})."
        )
    return "\n".join(lines + [""] + notes) + "\n"


def _photos(stage: str, figures: dict, size: int) -> int:
    """Return the photos a stage's time is divided by: those it worked on."""
    if stage == "extraction":
        return max(1, figures.get("computed") or figures.get("photos", size))
    if stage == "rescan":
        return max(1, figures.get("read", 1))
    return figures.get("photos", size)


if __name__ == "__main__":
    sys.exit(main())
