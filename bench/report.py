"""The results as JSON and as a markdown table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench.extraction import Extraction
from bench.suite import Results
from bench.training import LoopComparison, Training


def write_json(results: Results, path: Path) -> None:
    """Write the results, every sample included, as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(results), indent=1) + "\n")


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _spread(seconds: tuple[float, ...]) -> str:
    return f"median of {len(seconds)}, {min(seconds):.2f}-{max(seconds):.2f} s"


def loop_rows(c: LoopComparison | Training) -> list[str]:
    """Return the markdown table rows of the two loops' fits."""
    fit, target = c.cached, c.target_seconds
    return [
        f"| Head training from cache, {fit.images:,} features × {fit.epochs} epochs, batch "
        f"{fit.batch_size} (whole fit, tracing its loop included), the library's "
        f"public-API loop | {fit.seconds:.2f} s "
        f"({fit.epoch_seconds * 1000:.0f} ms per epoch; {_spread(c.cached_seconds)}) | "
        f"≤ {target:g} s | {_met(fit.seconds <= target)} |",
        f"| The same through the private-API loop it replaced (bench/private_loop.py, timed "
        f"in turn with it) | {c.private.seconds:.2f} s ({_spread(c.private_seconds)}); "
        f"public / private {c.public_over_private:.2f}× (median of the repeats' ratios) | "
        f"≤ {target:g} s | {_met(c.private.seconds <= target)} |",
        f"| The same, the process's next fit (its traced loop reused: a server's next "
        f"training, the audit's next fold), the library's loop | {c.cached_again.seconds:.2f} s "
        f"({_spread(c.cached_again_seconds)}) | "
        f"≤ {target:g} s | {_met(c.cached_again.seconds <= target)} |",
        f"| The next fit through the private-API loop | {c.private_again.seconds:.2f} s "
        f"({_spread(c.private_again_seconds)}); public / private "
        f"{c.public_over_private_again:.2f}× | "
        f"≤ {target:g} s | {_met(c.private_again.seconds <= target)} |",
    ]


def _ms(p50: float, p95: float) -> str:
    return f"{p50:.1f} / {p95:.1f} ms"


def _extraction_rows(ex: Extraction, target: float) -> list[str]:
    return [
        f"| Extraction ({ex.precision}), pipeline from JPEG files ({ex.images} photos, batch "
        f"{ex.batch_size}, best of {len(ex.pipeline_seconds)}) | "
        f"{ex.pipeline_images_per_s:.1f} images/s | | |",
        f"| Extraction ({ex.precision}), raw model call on a ready uint8 batch | "
        f"{ex.raw_images_per_s:.1f} images/s | | |",
        f"| Extraction ({ex.precision}) ratio, pipeline / raw | {ex.ratio:.3f} | ≥ {target} | "
        f"{_met(ex.ratio >= target)} |",
    ]


def markdown(results: Results) -> str:
    """Return a markdown summary: the machine, one table of measurements, the growth table."""
    r, t = results, results.targets
    m, ex, tr, cl = r.machine, r.extraction, r.training, r.classify
    cold, home, mem = r.cold_start, r.home_import, r.training_memory
    n, epochs = tr.cached.images, r.settings.epochs
    load = ", ".join(f"{a:.2f}" for a in r.load_average_start)
    load_end = ", ".join(f"{a:.2f}" for a in r.load_average_end)
    lines = [
        f"## Flower Lens benchmark{' (quick smoke run)' if r.quick else ''}",
        "",
        f"{m.cores} cores, {m.cpu_model}, {m.memory_gb} GB, computing on {m.device}; "
        f"Python {m.python}, "
        f"TensorFlow {m.tensorflow}, Keras {m.keras}. Load average (1, 5, 15 min) at start "
        f"{load}, at end {load_end}. Photos {r.photo_size[0]}×{r.photo_size[1]} JPEG, "
        f"{r.photo_bytes_mean / 1024:.1f} KiB on average. Total {r.seconds:.0f} s.",
        "",
        "| Measurement | Result | Target | Met |",
        "|---|---|---|---|",
        *_extraction_rows(ex, t["extraction_ratio_min"]),
        *(
            _extraction_rows(r.extraction_float32, t["extraction_ratio_min"])
            if r.extraction_float32
            else []
        ),
        *loop_rows(tr),
        f"| Head training from cache at batch {tr.cached_other_batch.batch_size} | "
        f"{tr.cached_other_batch.seconds:.2f} s "
        f"({tr.cached_other_batch.epoch_seconds * 1000:.0f} ms per epoch) | | |",
        f"| Plain fit through ResNet50, one epoch of {tr.plain.images} photos | "
        f"{tr.plain.epoch_seconds:.2f} s (first epoch {tr.plain.first_epoch_seconds:.2f} s) "
        "| | |",
        f"| Plain fit extrapolated to {n:,} photos × {epochs} epochs | "
        f"{tr.plain_seconds_estimate:,.0f} s | | |",
        f"| Speed-up of training, plain / from cache | {tr.speedup:,.0f}× | "
        f"≥ {t['training_speedup_min']:g}× | {_met(tr.speedup >= t['training_speedup_min'])} |",
        f"| Speed-up of a first run (one extraction, ~{tr.extraction_seconds_estimate:,.0f} s, "
        f"+ training) | {tr.speedup_first_run:,.1f}× | | |",
        f"| classify_one on a JPEG path, p50 / p95 ({cl.classify_one.samples} runs) | "
        f"{_ms(cl.classify_one.p50_ms, cl.classify_one.p95_ms)} | | |",
        f"| Raw model call on one ready tensor, p50 / p95 | "
        f"{_ms(cl.raw_model.p50_ms, cl.raw_model.p95_ms)} | | |",
        f"| classify_one / raw model call, p50 | {cl.ratio_p50:.3f} | "
        f"≤ {t['classify_ratio_p50_max']} | {_met(cl.ratio_p50 <= t['classify_ratio_p50_max'])} |",
        f"| Grad-CAM, p50 / p95 | {_ms(cl.gradcam.p50_ms, cl.gradcam.p95_ms)} | | |",
        f"| Cold start, spawn to first prediction (median of {cold.samples}) | "
        f"{cold.ready_seconds:.2f} s: interpreter {cold.interpreter_seconds:.2f}, TF+Keras+"
        f"library import {cold.import_seconds:.2f}, Classifier.load {cold.load_seconds:.2f}, "
        f"first classify {cold.first_classify_seconds:.2f} | | |",
        f"| Home page modules import (median of {home.samples}) | {home.import_seconds:.3f} s "
        f"(process {home.process_seconds:.2f} s); TensorFlow imported: "
        f"{'yes' if home.tensorflow_imported else 'no'} | no TensorFlow | "
        f"{_met(not home.tensorflow_imported)} |",
        f"| Peak RSS, head training from cache ({mem.images:,} × {mem.epochs} epochs) | "
        f"{mem.peak_rss_mb:,.0f} MiB ({mem.rss_before_mb:,.0f} MiB before the fit) | | |",
        f"| Peak RSS, classify path (load run, classify one photo) | "
        f"{cold.peak_rss_mb:,.0f} MiB | | |",
    ]
    lines += [
        "",
        f"ResNet50's arithmetic on {r.variants.source} (`FeatureExtractor.create('auto')` chose "
        f"{r.variants.chosen}; native bfloat16 on this CPU: "
        f"{'yes' if r.variants.cpu_bf16 else 'no'}):",
        "",
        "| Variant | Batch | Images/s | vs plain float32 | Min cosine to plain float32 "
        "| Max relative error |",
        "|---|---|---|---|---|---|",
    ]
    plain = r.variants.rate("plain Keras float32", r.variants.variants[0].batch_size)
    for v in r.variants.variants:
        lines.append(
            f"| {v.name} | {v.batch_size} | {v.images_per_s:.1f} | {v.images_per_s / plain:.2f}× "
            f"| {v.cosine_min:.6f} | {v.max_relative_error:.1e} |"
        )
    lines += [
        "",
        f"| Photos | Extraction s | Images/s | Cache re-read s | Head training s "
        f"({epochs} epochs) | Cache bytes/photo |",
        "|---|---|---|---|---|---|",
    ]
    for step in r.growth:
        lines.append(
            f"| {step.images:,} | {step.extraction_seconds:.1f} | "
            f"{step.extraction_images_per_s:.1f} | {step.cache_read_seconds:.2f} | "
            f"{step.training_seconds:.2f} | {step.cache_bytes_per_image:,.0f} |"
        )
    if len(r.growth) > 1:
        small, large = r.growth[0], r.growth[-1]
        limit = t["growth_per_photo_max"]
        for what, a, b in (
            ("extraction", small.extraction_seconds, large.extraction_seconds),
            ("head training", small.training_seconds, large.training_seconds),
        ):
            ratio = (b / large.images) / (a / small.images)
            lines.append(
                f"\nSeconds per photo of {what} at {large.images:,} photos / at "
                f"{small.images:,}: {ratio:.2f} (target ≤ {limit}: {_met(ratio <= limit)})."
            )
    lines += _audit_lines(r)
    lines += _retrain_lines(r)
    lines += _export_lines(r)
    return "\n".join(lines) + "\n"


def _audit_lines(r: Results) -> list[str]:
    a, limit = r.audit, r.targets["audit_seconds_max"]
    return [
        "",
        f"Audit of {a.photos:,} photos, every feature cached, {a.folds} folds: "
        f"**{a.seconds:.1f} s** (target ≤ {limit:g} s: {_met(a.seconds <= limit)}): "
        f"the cache read {a.features_seconds:.1f} s, {a.folds} heads trained "
        f"{a.folds_seconds:.1f} s, cleanlab and duplicate groups {a.cleanlab_seconds:.1f} s. "
        f"Out-of-sample accuracy {a.accuracy:.1%} (generated photos, random weights); "
        f"{a.label_issues} label issues, {a.outliers} outliers, {a.duplicate_groups} "
        "duplicate groups found.",
    ]


def _retrain_lines(r: Results) -> list[str]:
    rt, t = r.retrain, r.targets
    cold, warm, app = rt.cold, rt.warm, rt.in_process_seconds
    head = warm.first("training the head")
    saving = warm.first("saving the run")
    phases = (
        f"spawn to the head's training {head:.1f} s, the head {saving - head:.1f} s, saving and "
        f"exit {warm.seconds - saving:.1f} s"
        if head is not None and saving is not None
        else "phases not found in its output"
    )
    return [
        "",
        f"Training as a person starts it, `python -m flower_model train` on {rt.photos:,} "
        f"photos, {rt.epochs} epochs, random weights, spawn to exit:",
        "",
        "| What | Seconds | Target | Met |",
        "|---|---|---|---|",
        f"| Cold: empty workspace (scan, ResNet50, every photo's features, training, saving) "
        f"| {cold.seconds:.1f} | ≤ {t['cold_training_seconds_max']:g} | "
        f"{_met(cold.seconds <= t['cold_training_seconds_max'])} |",
        f"| Warm: every feature cached ({phases}) | {warm.seconds:.1f} | "
        f"≤ {t['warm_retrain_seconds_max']:g} | "
        f"{_met(warm.seconds <= t['warm_retrain_seconds_max'])} |",
        f"| `train()` on cached features in a process that trained before (the app's worker, "
        f"alone on the machine) | {app:.1f} | | |",
        *_click_rows(r),
        "",
        f"Disk per run: {warm.run_bytes / 1e6:.1f} MB (the head alone; ResNet50 is rebuilt "
        "from its weights when a run is loaded).",
    ]


def _click_rows(r: Results) -> list[str]:
    click, limit = r.app_click, r.targets["app_retrain_seconds_max"]
    if click is None:
        return [f"| The app: click Train to final curves | not measured: {r.app_click_missing} "
                f"| ≤ {limit:g} | |"]  # fmt: skip
    return [
        f"| The app in Chromium: click Train to the final curves drawn, the worker warm (the "
        f"server's first training: {click.first_seconds:.1f} s) | {click.seconds:.1f} | "
        f"≤ {limit:g} | {_met(click.seconds <= limit)} |"
    ]


def _export_lines(r: Results) -> list[str]:
    ex = r.exports
    lines = [
        "",
        f"Exports, each through its own runtime and its own predict.py loader, on {ex.source}:",
        "",
        "| Format | Model file | Export s | Load s | One photo p50 / p95 | Top class as the app "
        "| Max \\|Δp\\| |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in ex.formats:
        lines.append(
            f"| {f.format} | {f.model_bytes / 1e6:.1f} MB | {f.export_seconds:.1f} | "
            f"{f.load_seconds:.2f} | {_ms(f.latency.p50_ms, f.latency.p95_ms)} | "
            f"{f.top1_agreement:.1%} | {f.max_difference:.1e} |"
        )
    if ex.from_image_bytes_agreement is not None:
        lines.append(
            f"\nSavedModel `from_image_bytes` (TensorFlow's decoders, not Pillow's): the app's top "
            f"class on {ex.from_image_bytes_agreement:.1%} of the photos, max |Δp| "
            f"{ex.from_image_bytes_max_difference:.1e}."
        )
    for f in ex.formats:
        if f.int8_accuracy is not None:
            lines.append(
                f"\nint8 on the run's validation split: accuracy {f.int8_accuracy:.1%} against "
                f"float {f.float_accuracy:.1%}."
            )
    return lines
