"""Every measurement, in one run, in a workspace of its own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.app_click import AppClick, browser_missing, measure_app_click
from bench.audit import AuditTiming, measure_audit, seed_workspace_cache
from bench.classify import Classify, measure_classify
from bench.exports import Exports, measure_exports, sample_run
from bench.extraction import Extraction, measure_extraction
from bench.growth import GrowthStep, measure_growth
from bench.machine import Machine, describe_machine, load_average
from bench.memory import TrainingMemory, measure_training_memory
from bench.photos import PhotoSet, make_photos
from bench.retrain import Retrain, link_photos, measure_retrain
from bench.saved_run import save_small_run
from bench.settings import TARGETS, Settings
from bench.startup import ColdStart, HomeImport, measure_cold_start, measure_home_import
from bench.training import Training, measure_training
from bench.variants import Variants, measure_variants
from flower_model.service.runtime import settle_objects

Progress = Callable[[str], None]
# Real flower photos, when this checkout has ../shared beside it.
SHARED_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "flowers-sample"


@dataclass(frozen=True)
class Results:
    """Everything one benchmark run measured, and where."""

    quick: bool
    settings: Settings
    machine: Machine
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]
    photo_size: tuple[int, int]
    photo_bytes_mean: float
    variants: Variants
    extraction: Extraction  # with the extractor `FeatureExtractor.create('auto')` chose
    extraction_float32: Extraction | None  # with float32, when auto chose otherwise
    training: Training
    classify: Classify
    cold_start: ColdStart
    home_import: HomeImport
    training_memory: TrainingMemory
    growth: tuple[GrowthStep, ...]
    audit: AuditTiming
    retrain: Retrain
    app_click: AppClick | None  # None without a browser
    app_click_missing: str | None  # why it was not measured
    exports: Exports
    seconds: float
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))
    measured_at: str = ""  # when the run started, to the minute (UTC)


def chosen_photos(photos: PhotoSet, count: int) -> tuple[list[Path], str]:
    """Return `count` photo files: real flowers from ../shared when present, else made."""
    real = sorted(SHARED_SAMPLE.glob("*/*/*.jpg"))
    if len(real) >= count:
        return real[:: len(real) // count][
            :count
        ], f"{count} real flower photos from {SHARED_SAMPLE.name}"
    return list(photos.paths[:count]), f"{count} generated photos"


def variant_photos(photos: PhotoSet, count: int) -> tuple[np.ndarray, str]:
    """Return `count` photos at 224×224: real flowers from ../shared when present, else made."""
    from flower_model.data.images import load_rgb
    from flower_model.model.backbone import INPUT_SIZE

    chosen, source = chosen_photos(photos, count)
    return np.stack([load_rgb(p, size=INPUT_SIZE) for p in chosen]), source


def run_suite(settings: Settings, work: Path, quick: bool, progress: Progress) -> Results:
    """Return every measurement; `work` becomes the workspace ($FLOWER_LENS_HOME) and scratch."""
    from flower_model.core.workspace import HOME_ENV
    from flower_model.data.images import load_rgb
    from flower_model.data.synthetic import PHOTO_SIZE
    from flower_model.features.extractor import FeatureExtractor
    from flower_model.model.backbone import INPUT_SIZE, WeightsChoice, build_resnet50

    start = time.perf_counter()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    os.environ[HOME_ENV] = str(work / "home")
    load_start = load_average()
    machine = describe_machine()

    progress(f"making {settings.photos_needed} photos")
    photos = make_photos(work / "photos", settings.photos_needed)
    progress("saving a small run with the real training code")
    run = save_small_run(work / "run-photos")

    progress("building ResNet50 (seeded random weights)")
    resnet = build_resnet50(WeightsChoice("none"), seed=42)
    extractor = FeatureExtractor.create(resnet)
    progress(f"ResNet50 variants (auto chose {extractor.precision})")
    images, source = variant_photos(photos, settings.variant_images)
    variants = measure_variants(
        resnet,
        images,
        extractor,
        settings.variant_batch_sizes,
        settings.variant_repeats,
        source,
    )

    progress(f"extraction: {settings.extraction_images} photos, pipeline vs raw model call")
    extraction_photos = photos.first(settings.extraction_images)
    extraction = measure_extraction(
        extraction_photos,
        extractor,
        work / "features",
        settings.batch_size,
        settings.extraction_repeats,
    )
    extraction_float32 = None
    if extractor.precision != "float32":
        progress("extraction again with the float32 backbone")
        extraction_float32 = measure_extraction(
            extraction_photos,
            FeatureExtractor(resnet, "float32", extractor.identity),
            work / "features",
            settings.batch_size,
            settings.extraction_repeats,
        )
    progress(f"training: {settings.training_images} cached features vs the plain fit")
    # The process as the app's worker has it when it trains: what lives on put out of the
    # garbage collector's sight (the worker settles after its warm-up). Here the bench's own
    # ResNet50 variants would otherwise be walked by a collection inside the timed fit.
    settle_objects()
    training = measure_training(
        resnet,
        photos.first(settings.plain_images),
        settings.training_images,
        settings.epochs,
        settings.batch_size,
        extraction.pipeline_images_per_s,
        settings.other_batch_size,
        settings.head_fit_repeats,
    )
    progress("classify one photo and Grad-CAM")
    photo = photos.paths[0]
    classify = measure_classify(run.run_id, photo, settings.classify_repeats)
    progress("cold start (fresh processes)")
    cold = measure_cold_start(run.run_id, photo, settings.cold_starts)
    home = measure_home_import(settings.home_imports)
    progress("memory of a head training (fresh process)")
    memory = measure_training_memory(settings.training_images, settings.epochs, settings.batch_size)
    growth = measure_growth(
        photos,
        settings.growth_sizes,
        extractor,
        work,
        settings.epochs,
        settings.batch_size,
        progress,
    )
    progress(f"audit: {max(settings.growth_sizes):,} photos, every feature cached")
    from flower_model.features.cache import FeatureCache

    grown = max(
        (work / "features").glob(f"features-*/{extractor.cache_key}"),
        key=lambda folder: FeatureCache(folder.name, folder.parent).count(),
    )
    seed_workspace_cache(grown, FeatureCache(extractor.cache_key))
    audited = link_photos(photos, max(settings.growth_sizes), work / "audit-photos")
    settle_objects()  # as the worker before the audit it runs
    audit = measure_audit(audited, "none", extractor.precision)
    progress(f"training as a person starts it: {settings.retrain_images:,} photos, cold then warm")
    retrain = measure_retrain(photos, settings.retrain_images, work, settings.epochs)
    app_click, app_click_missing = None, browser_missing()
    if app_click_missing is None:
        progress("the app in a browser: click Train to the final curves")
        app_click = measure_app_click(
            work / "retrain-photos", work / "retrain-home", settings.epochs, work / "app.log"
        )
    progress("exports: every format through its own runtime")
    exported_run = (None if quick else sample_run(SHARED_SAMPLE, settings.epochs)) or run
    export_files, export_source = chosen_photos(photos, settings.export_photos)
    exports = measure_exports(
        exported_run,
        np.stack([load_rgb(p, size=INPUT_SIZE) for p in export_files]),
        [p.read_bytes() for p in export_files],
        f"{export_source}, run {exported_run.run_id} ({exported_run.accuracy:.0%} accurate, "
        f"weights {exported_run.weights_label})",
        settings.export_formats,
        work / "exports",
        settings.export_repeats,
    )
    return Results(
        measured_at=started_at,
        quick=quick,
        settings=settings,
        machine=machine,
        load_average_start=load_start,
        load_average_end=load_average(),
        photo_size=PHOTO_SIZE,
        photo_bytes_mean=photos.mean_bytes(),
        variants=variants,
        extraction=extraction,
        extraction_float32=extraction_float32,
        training=training,
        classify=classify,
        cold_start=cold,
        home_import=home,
        training_memory=memory,
        growth=growth,
        audit=audit,
        retrain=retrain,
        app_click=app_click,
        app_click_missing=app_click_missing,
        exports=exports,
        seconds=time.perf_counter() - start,
    )
