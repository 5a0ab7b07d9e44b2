"""What each verb of the command line does: download, info, audit, train, tune, evaluate,
predict, runs, export, extract. Each prints for people (and JSON with --json) and returns the
exit code."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from flower_model.cli.progress import Progress, scan_with_progress
from flower_model.core import workspace
from flower_model.core.errors import FlowerLensError
from flower_model.core.workspace import DATA_ENV, remove_stale_temporaries
from flower_model.model.config import TrainConfig
from flower_model.service.runtime import silenced_stderr, start_tensorflow


def _data_dir(args: argparse.Namespace) -> Path:
    value = args.data or os.environ.get(DATA_ENV)
    if not value:
        raise FlowerLensError(
            f"no dataset given: pass --data DIR (a folder with one sub-folder per class), "
            f"set ${DATA_ENV}, or run 'python -m flower_model download' first"
        )
    return Path(value)


def cmd_download(args: argparse.Namespace) -> int:
    from flower_model.data.dataset import find_class_root
    from flower_model.data.download import download_dataset

    folder = download_dataset(args.handle)
    print(find_class_root(folder))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from flower_model.data.dataset import dataset_summary
    from flower_model.model.backbone import weights_status

    summary = dataset_summary(scan_with_progress(_data_dir(args)))
    if args.json:
        print(json.dumps(summary, indent=1, allow_nan=False))
        return 0
    print(f"dataset   {summary['root']}  ({summary['images']} photos, id {summary['fingerprint']})")
    for name, count in summary["classes"].items():
        print(f"  {name:<12}{count:>6}")
    w, h = summary["width"], summary["height"]
    print(f"sizes     {w['min']}–{w['max']} × {h['min']}–{h['max']} px")
    print(f"skipped   {len(summary['skipped'])} file(s)")
    for item in summary["skipped"][:20]:
        print(f"  {item['path']}: {item['reason']}")
    print(f"weights   {weights_status().message}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from flower_model.core.cluster import cluster_address
    from flower_model.core.events import CancelToken
    from flower_model.features.extraction import dataset_features

    dataset = scan_with_progress(_data_dir(args))
    cancel = CancelToken()
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())  # stops after the current batch
    bars: list[Progress] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(Progress("features", total))
        bars[0].update(done)

    def on_phase(message: str) -> None:
        print(message, file=sys.stderr)

    remove_stale_temporaries()
    address = cluster_address()
    if address is None:
        start_tensorflow(quiet=not args.debug)
    try:
        got = dataset_features(
            dataset,
            args.weights,
            args.seed,
            args.precision,
            progress=progress,
            cancelled=cancel.is_set,
            on_phase=on_phase,
        )
    finally:
        for bar in bars:
            bar.close()
    stats = got.stats
    where = f"on the cluster at {address}" if address else "on this machine"
    print(
        f"features of {stats.total:,} photo(s): {stats.computed:,} computed {where}, "
        f"{stats.cached:,} already in the cache ({stats.precision}, weights "
        f"{got.weights_label}, {stats.seconds:.1f} s); a training with these settings "
        "reads them all from the cache"
    )
    return 0


def _config(args: argparse.Namespace) -> TrainConfig:
    """Return the training settings the command line was given (every TrainConfig field)."""
    from dataclasses import fields

    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def _dataset_to_train(args: argparse.Namespace):
    """Return the dataset of --data, scanned, with its recorded decisions unless ignored."""
    dataset = scan_with_progress(_data_dir(args))
    return dataset if args.ignore_decisions else _decided(dataset)


def cmd_train(args: argparse.Namespace) -> int:

    from flower_model.core.events import CancelToken, TrainEvent
    from flower_model.workflows.train import train

    config = _config(args)
    dataset = _dataset_to_train(args)
    cancel = CancelToken()
    # The first Ctrl-C stops after the current batch and keeps the best completed epoch.
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    bars: dict[str, Progress] = {}

    def close_bars() -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()

    def on_event(event: TrainEvent) -> None:
        if event.kind == "extract":
            bars.setdefault("extract", Progress("features", event.total)).update(event.done)
        elif event.kind == "phase":
            close_bars()
            print(event.message, file=sys.stderr)
        elif event.kind == "batch":
            bar = bars.setdefault(
                "train", Progress("training", event.epochs * event.batches, unit="batches")
            )
            done = (event.epoch - 1) * event.batches + event.batch
            bar.update(done, f"epoch {event.epoch}/{event.epochs}, loss {event.loss:.3f}")
        elif event.kind == "epoch":
            line = (
                f"epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f} "
                f"acc {event.accuracy:.3f}  val_loss {event.val_loss:.4f} "
                f"val_acc {event.val_accuracy:.3f}"
            )
            if "train" in bars:
                bars["train"].write(line)
            else:
                print(line, file=sys.stderr)

    remove_stale_temporaries()
    start_tensorflow(quiet=not args.debug)
    try:
        info = train(dataset, config, on_event=on_event, cancel=cancel)
    finally:
        close_bars()
    meta = info.metadata
    print(
        f"run {info.run_id}: validation accuracy {info.accuracy:.3f} "
        f"({meta.epochs_completed} epochs, {meta.stopped}, weights {info.weights_label}, "
        f"learning rate {_rates(meta.config)})",
        file=sys.stderr,
    )
    print(info.run_id)
    return 0


def _trial_line(trial, total: int) -> str:
    """Return one trial as a table row for people."""
    settings = (
        f"lr {trial.learning_rate:9.2e}  batch {trial.batch_size:>3}  epochs {trial.epochs:>2}  "
        f"dropout {trial.dropout:.1f}"
    )
    loss = f"loss {trial.loss:7.4f}" if trial.loss is not None else "loss    —   "
    if trial.state == "complete":
        score = f"{loss}  accuracy {trial.accuracy:6.1%} ± {trial.spread:4.1%}"
    else:
        score = f"{loss}  ({trial.ended})"
    return f"trial {trial.number + 1:>3}/{total}  {settings}  {score}"


def cmd_tune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from flower_model.core.events import CancelToken, TrainEvent
    from flower_model.model.search import Space, Trial
    from flower_model.workflows.tune import tune, tuning_file

    config = _config(args)
    if args.trials < 1:
        raise FlowerLensError(f"--trials must be at least 1, not {args.trials}")
    if args.minutes is not None and not args.minutes > 0:
        raise FlowerLensError(f"--minutes must be a positive number, not {args.minutes}")
    dataset = _dataset_to_train(args)
    cancel = CancelToken()
    # Ctrl-C ends the search after the current batch and keeps the trials done.
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    bars: dict[str, Progress] = {}

    def on_event(event: TrainEvent) -> None:
        if event.kind == "extract":
            bars.setdefault("extract", Progress("features", event.total)).update(event.done)
        elif event.kind == "phase":
            for bar in bars.values():
                bar.close()
            bars.clear()
            print(event.message, file=sys.stderr)
        elif event.kind == "range" and event.detail:
            suggested = event.detail["suggested"]
            said = f"{suggested:.1e}" if suggested else "none (the loss never fell)"
            print(f"learning-rate range test: steepest fall at {said}", file=sys.stderr)
        elif event.kind == "trial" and event.detail:
            print(_trial_line(Trial.from_json(event.detail), args.trials), file=sys.stderr)

    remove_stale_temporaries()
    start_tensorflow(quiet=not args.debug)
    seconds = args.minutes * 60 if args.minutes is not None else None
    found = tune(
        dataset, config, args.trials, seconds, Space(args.search_dropout), on_event, cancel
    )
    search, best = found.search, found.search.best
    pruned = sum(t.state == "pruned" for t in search.trials)
    print(
        f"{len(search.trials)} trials in {search.seconds:.0f} s ({search.stopped}; {pruned} "
        f"pruned), {search.folds}-fold cross-validation on {search.photos:,} training photos",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(found.to_json(), indent=1, allow_nan=False))
        return 0
    if best is None or best.accuracy is None:
        print("no trial completed: no settings to suggest", file=sys.stderr)
        return 1
    first = search.trials[0]
    if first.number == best.number:
        against = "; the settings given (trial 1) were the best found"
    elif first.state == "complete":
        against = f"; the settings given, trial 1: loss {first.loss:.4f}, {first.accuracy:.1%}"
    else:
        against = f"; the settings given, trial 1: {first.ended}"
    print(
        f"best: trial {best.number + 1}, cross-validated loss {best.loss:.4f}, accuracy "
        f"{best.accuracy:.1%} ± {best.spread:.1%}{against}",
        file=sys.stderr,
    )
    chosen = replace(best.config(found.base), cross_validation=search.folds)
    flags = (
        f"--lr {chosen.learning_rate:.2e} --batch-size {chosen.batch_size} "
        f"--epochs {chosen.epochs} --patience {chosen.patience}"
        + (f" --dropout {chosen.dropout:g}" if chosen.dropout != config.dropout else "")
        + f" --cross-validation {chosen.cross_validation}"
    )
    print(f"kept in {tuning_file(dataset, config.weights)}", file=sys.stderr)
    print(f"train with: python -m flower_model train --data {dataset.root} {flags}")
    return 0


def _decided(dataset):
    """Return the dataset with the decisions stored about it applied, saying so."""
    from flower_model.data.decisions import decided

    applied = decided(dataset)
    if applied is not dataset:
        print(
            f"decisions: {len(applied.excluded)} photo(s) left out, {len(applied.relabelled)} "
            "relabelled (from 'audit --apply' or the app; --ignore-decisions trains on the "
            "folder as it is)",
            file=sys.stderr,
        )
    return applied


def _audit_lines(audit, top: int) -> list[str]:
    """Return the audit as lines for a person: each kind, worst first, at most `top` each."""
    lines = [
        f"audit of {audit.photos:,} photos, features from {audit.weights_label} weights: "
        f"out-of-sample accuracy {audit.accuracy:.1%} ({audit.folds} folds, {audit.seconds:.1f} s)"
    ]
    if not audit.transfer_learning:
        lines.append(
            "note: these features come from random weights (no transfer learning), so the "
            "findings below are not meaningful; audit with ImageNet weights to trust them"
        )
    lines.append(f"label issues: {len(audit.label_issues)}")
    lines += [
        f"  {f.score:.3f}  {f.path}  filed under {f.given}, looks like {f.suggested}"
        for f in audit.label_issues[:top]
    ]
    lines.append(f"outliers: {len(audit.outliers)}")
    lines += [f"  {f.score:.3f}  {f.path}  ({f.given})" for f in audit.outliers[:top]]
    exact = sum(g.exact for g in audit.duplicates)
    lines.append(
        f"duplicate groups: {len(audit.duplicates)} ({exact} exact, "
        f"{len(audit.duplicates) - exact} near); {len(audit.leaks)} would be cut by a plain "
        "split (training keeps each group on one side)"
    )
    for group in audit.duplicates[:top]:
        kind = "exact" if group.exact else "near "
        notes = ("  [different classes]" if group.conflicting else "") + (
            "  [leak]" if group.leak else ""
        )
        lines.append(f"  {kind}  {', '.join(group.paths)}{notes}")
    small = ", ".join(audit.small_classes) or "none"
    lines.append(f"classes much smaller than the others: {small}")
    return lines


def cmd_audit(args: argparse.Namespace) -> int:
    from flower_model.audit.findings import audit_dataset, check_kinds, suggested_decisions
    from flower_model.core.events import CancelToken
    from flower_model.data.decisions import decide_all, load_decisions, undo_all

    kinds = [kind.strip() for kind in (args.apply or "").split(",") if kind.strip()]
    if args.apply is not None:
        check_kinds(kinds)  # before the audit's work, not after
    dataset = scan_with_progress(_data_dir(args))
    if args.forget:
        undo_all(dataset)
        print(f"forgot every decision about {dataset.root}", file=sys.stderr)
        return 0
    cancel = CancelToken()
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    bars: dict[str, Progress] = {}

    def progress(what: str, done: int, total: int) -> None:
        if what not in bars:
            for bar in bars.values():
                bar.close()
            unit = "photos" if what.startswith("extracting") else "epochs"
            bars.clear()
            bars[what] = Progress(what, total, unit=unit)
        bars[what].update(done)

    start_tensorflow(quiet=not args.debug)
    with silenced_stderr(not args.debug, keep_python=True):
        try:
            audit = audit_dataset(
                dataset,
                args.weights,
                args.folds,
                args.seed,
                args.precision,
                progress,
                cancel,
                again=args.again,
            )
        finally:
            for bar in bars.values():
                bar.close()
    applied = []
    if args.apply is not None:
        applied = suggested_decisions(audit, kinds)
        decide_all(dataset, applied)
    if args.json:
        decisions = load_decisions(dataset.root).to_json()
        print(json.dumps({**audit.to_json(), "decisions": decisions}, indent=1, allow_nan=False))
        return 0
    print("\n".join(_audit_lines(audit, args.top)))
    if args.apply is not None:
        excluded = sum(w.action == "exclude" for w in applied)
        print(
            f"applied: {excluded} photo(s) left out, {len(applied) - excluded} relabelled; "
            "training uses them from now on ('audit --forget' undoes every decision)"
        )
    return 0


def _rates(config: TrainConfig) -> str:
    if config.mode == "finetune":
        return f"{config.learning_rate:g}, then {config.fine_tune_learning_rate:g} fine-tuning"
    return f"{config.learning_rate:g}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flower_model.runs.store import get_run
    from flower_model.workflows.evaluate import evaluate_run

    start_tensorflow(quiet=not args.debug)
    info = get_run(args.run)
    data = Path(args.data) if args.data else Path(info.metadata.dataset.root)
    evaluation = evaluate_run(info.run_id, scan_with_progress(data))
    if args.json:
        print(json.dumps({"run": info.run_id, **evaluation.to_json()}, indent=1, allow_nan=False))
        return 0
    print(f"run {info.run_id} (weights {info.weights_label}) on {evaluation.count} held-out photos")
    print(f"accuracy {evaluation.accuracy:.3f}   loss {evaluation.loss:.4f}")
    print(f"{'class':<12}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>6}")
    for m in evaluation.per_class:
        print(f"{m.name:<12}{m.precision:>10.3f}{m.recall:>8.3f}{m.f1:>8.3f}{m.support:>6}")
    print("confusion (rows: true, columns: predicted)")
    for name, row in zip(evaluation.class_names, evaluation.confusion, strict=True):
        print(f"  {name:<12}" + "".join(f"{c:>6}" for c in row))
    if evaluation.mistakes:
        print("most confidently wrong:")
        for m in evaluation.mistakes[:5]:
            print(f"  {m.path}: {m.true_class} taken for {m.predicted_class} ({m.probability:.2f})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from flower_model.inference.predict import Classifier, Failure, photos_in

    start_tensorflow(quiet=not args.debug)
    classifier = Classifier.load(args.run)
    results = classifier.classify_stream(photos_in(Path(p) for p in args.photos))
    failed = total = 0
    if args.json:
        # Streamed, one object a line, so that a large folder never waits in memory.
        print("[")
    for result in results:
        failed += isinstance(result, Failure)
        if args.json:
            text = json.dumps(result.to_json(), allow_nan=False)
            print(("," if total else "") + text, flush=True)
        elif isinstance(result, Failure):
            print(f"error: {result.message}", file=sys.stderr)
        else:
            note = "  (not confident: maybe none of these)" if not result.confident else ""
            print(f"{result.name}: {result.top_class} {result.top_probability:.3f}{note}")
        total += 1
    if args.json:
        print("]")
    if failed:
        print(f"error: {failed} of {total} file(s) could not be classified", file=sys.stderr)
    return 1 if failed or not total else 0


def cmd_runs(args: argparse.Namespace) -> int:
    from flower_model.runs.store import scan_runs

    runs, broken = scan_runs()
    if args.json:
        listed = [info.metadata.to_json() for info in runs]
        listed += [{"run_id": b.run_id, "broken": b.reason} for b in broken]
        print(json.dumps(listed, indent=1, allow_nan=False))
        return 0
    if not runs and not broken:
        print("no runs yet: python -m flower_model train --data DIR", file=sys.stderr)
        return 0
    print(f"{'run':<22}{'accuracy':>9}  {'epochs':>6}  {'mode':<9}weights")
    for info in runs:
        summary = info.summary
        print(
            f"{info.run_id:<22}{info.accuracy:>9.3f}  {summary.epochs_completed:>6}  "
            f"{summary.mode:<9}{info.weights_label}"
        )
    for item in broken:
        print(f"{item.run_id:<22}{'broken':>9}  {item.reason}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from flower_model.export.exporter import export_run
    from flower_model.runs.store import get_run

    info = get_run(args.run)
    start_tensorflow(quiet=not args.debug)
    shown = [""]
    bars: list[Progress] = []

    def progress(what: str, share: float) -> None:
        # A new step is worth a line of its own in a pipe; a step's own count is not.
        if not bars:
            bars.append(Progress(f"exporting {info.run_id} as {args.format}", 100, unit="%"))
        step = what.split(" on ")[0] if " photo " in what else what
        if step != shown[0] and bars[0].bar is None and share < 1.0:
            print(what, file=sys.stderr)
            bars[0].last_line = time.monotonic()
        shown[0] = step
        bars[0].update(round(share * 100), what)

    # The converters' C++ logs and Keras' deprecation warnings are not for people.
    with silenced_stderr(not args.debug, keep_python=True), warnings.catch_warnings():
        warnings.simplefilter("ignore" if not args.debug else "default")
        try:
            result = export_run(
                info, args.format, Path(args.out) if args.out else None, progress, args.replace
            )
        finally:
            for bar in bars:
                bar.close()
    parity = result.parity
    lines = [
        f"exported run {info.run_id} as {args.format}: {result.bytes / 1e6:.1f} MB "
        f"(model {result.model_bytes / 1e6:.1f} MB) in {result.seconds:.0f} s",
        f"checked on {parity.photos} {result.manifest.checked_on}: largest difference from the app "
        f"{parity.max_difference:.1e}, same top class on {parity.top1_agreement:.0%}",
    ]
    if result.quantized is not None:
        q = result.quantized
        lines.append(
            f"int8 on all {q.photos} validation photos: accuracy {q.int8_accuracy:.1%} "
            f"(float {q.float_accuracy:.1%}), same top class as float on {q.top1_agreement:.1%}"
        )
    print("\n".join(lines), file=sys.stderr)
    print(result.path)
    return 0


def _list_runs(owner: str | None, now: float) -> None:
    """Print the saved runs by who trained them, their size and age."""
    from flower_model.runs.store import list_runs

    runs = [(info, info.owner or "(the host)") for info in list_runs()]
    runs = [(info, who) for info, who in runs if owner in (None, who)]
    print(f"\n{'run':<32}{'trained by':<34}{'MB':>8}{'age':>12}")
    for info, who in sorted(runs, key=lambda item: (item[1], item[0].run_id)):
        days = (now - info.trained_at) / 86400
        size = workspace.bytes_under(info.path) / 2**20
        print(f"{info.run_id:<32}{who:<34}{size:>8.1f}{days:>8.1f} days")
    if not runs:
        print("(none)")


def cmd_workspace(args: argparse.Namespace) -> int:
    """List the uploads by owner, size and last use, and the workspace's folders; prune or
    delete uploads (the host's tool: it may delete any visitor's)."""
    from flower_model.data import owners, uploads

    if args.delete:
        matches = [f for f in uploads.uploaded_datasets() if f.name == args.delete]
        if not matches:
            raise FlowerLensError(f"no uploaded dataset is named {args.delete} (see `workspace`)")
        uploads.delete_dataset(matches[0])
        print(f"deleted the uploaded dataset {args.delete}")
    if args.delete_run:
        from flower_model.workflows.cleanup import remove_run

        remove_run(args.delete_run)
        print(f"deleted the run {args.delete_run}")
    if args.prune_days is not None:
        gone = uploads.expire_uploads(days=args.prune_days)
        print(f"deleted {len(gone)} upload(s) unused for {args.prune_days:g} days")
        for folder in gone:
            print(f"  {folder.name}")
    if args.prune_runs_days is not None:
        from flower_model.workflows.cleanup import prune_runs

        pruned = prune_runs(args.prune_runs_days, args.owner)
        print(f"deleted {len(pruned)} run(s) trained more than {args.prune_runs_days:g} days ago")
    if args.prune_caches_days is not None:
        from flower_model.workflows.cleanup import prune_caches

        freed, count = prune_caches(args.prune_caches_days)
        print(
            f"deleted {count} cache entries nothing wrote for {args.prune_caches_days:g} days "
            f"({freed / 2**20:,.1f} MB)"
        )
    now = time.time()
    listed = [
        (folder, owners.ownership_of(folder).owner or "(the host)")
        for folder in uploads.uploaded_datasets()
    ]
    if args.owner:
        listed = [(folder, owner) for folder, owner in listed if owner == args.owner]
    print(f"{'uploaded dataset':<32}{'owner':<34}{'MB':>8}{'last used':>12}")
    for folder, owner in sorted(listed, key=lambda item: (item[1], item[0].name)):
        days = (now - uploads.last_used(folder)) / 86400
        size = workspace.bytes_under(folder) / 2**20
        print(f"{folder.name:<32}{owner:<34}{size:>8.1f}{days:>8.1f} days")
    if not listed:
        print("(none)")
    _list_runs(args.owner, now)
    print(f"\nworkspace {workspace.home_dir()}:")
    for name in ("datasets", "runs", "features", "scans", "exports", "audits", "journal"):
        print(f"  {name:<10}{workspace.bytes_under(workspace.home_dir() / name) / 2**20:>10.1f} MB")
    return 0
