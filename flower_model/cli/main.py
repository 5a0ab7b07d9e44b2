"""The command line: download | info | audit | train | evaluate | predict | runs | export."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from flower_model.audit.findings import FOLDS as AUDIT_FOLDS
from flower_model.core.errors import FlowerLensError
from flower_model.core.workspace import DATA_ENV, describe_failure, remove_stale_temporaries
from flower_model.export.formats import FORMATS as EXPORT_FORMATS
from flower_model.model.config import MODES, TrainConfig, default_of, help_of
from flower_model.model.precision import PRECISIONS
from flower_model.service.runtime import silenced_stderr, start_tensorflow


def _data_dir(args: argparse.Namespace) -> Path:
    value = args.data or os.environ.get(DATA_ENV)
    if not value:
        raise FlowerLensError(
            f"no dataset given: pass --data DIR (a folder with one sub-folder per class), "
            f"set ${DATA_ENV}, or run 'python -m flower_model download' first"
        )
    return Path(value)


class _Progress:
    """Progress of one phase on stderr: a live bar on a terminal; in a pipe or a file, whole
    lines, at most one every LINE_SECONDS, and the last one always."""

    LINE_SECONDS = 5.0

    def __init__(self, desc: str, total: int, unit: str = "photos") -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.last_line = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int, note: str = "") -> None:
        """Show that `done` of the total are done, with an optional note."""
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if done < self.total and now - self.last_line < self.LINE_SECONDS:
            return
        self.last_line = now
        share = done / self.total if self.total else 1.0
        line = f"{self.desc}: {done:,}/{self.total:,} {self.unit} ({share:.0%})"
        print(line + (f", {note}" if note else ""), file=sys.stderr)

    def write(self, line: str) -> None:
        """Print a whole line without breaking the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        """End the bar (a terminal's stays on screen, complete)."""
        if self.bar is not None:
            self.bar.close()


def _scan(path: Path):
    from flower_model.data.dataset import scan_dataset

    bars: list[_Progress] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(_Progress("checking photos", total))
        bars[0].update(done)

    try:
        return scan_dataset(path, progress=progress)
    finally:
        for bar in bars:
            bar.close()


def cmd_download(args: argparse.Namespace) -> int:
    from flower_model.data.dataset import find_class_root
    from flower_model.data.download import download_dataset

    folder = download_dataset(args.handle)
    print(find_class_root(folder))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from flower_model.data.dataset import dataset_summary
    from flower_model.model.backbone import weights_status

    summary = dataset_summary(_scan(_data_dir(args)))
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


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from flower_model.core.events import CancelToken, TrainEvent
    from flower_model.workflows.train import train

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    dataset = _scan(_data_dir(args))
    if not args.ignore_decisions:
        dataset = _decided(dataset)
    cancel = CancelToken()
    # The first Ctrl-C stops after the current batch and keeps the best completed epoch.
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    bars: dict[str, _Progress] = {}

    def close_bars() -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()

    def on_event(event: TrainEvent) -> None:
        if event.kind == "extract":
            bars.setdefault("extract", _Progress("features", event.total)).update(event.done)
        elif event.kind == "phase":
            close_bars()
            print(event.message, file=sys.stderr)
        elif event.kind == "batch":
            bar = bars.setdefault(
                "train", _Progress("training", event.epochs * event.batches, unit="batches")
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
    dataset = _scan(_data_dir(args))
    if args.forget:
        undo_all(dataset)
        print(f"forgot every decision about {dataset.root}", file=sys.stderr)
        return 0
    cancel = CancelToken()
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    bars: dict[str, _Progress] = {}

    def progress(what: str, done: int, total: int) -> None:
        if what not in bars:
            for bar in bars.values():
                bar.close()
            unit = "photos" if what.startswith("extracting") else "epochs"
            bars.clear()
            bars[what] = _Progress(what, total, unit=unit)
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
    evaluation = evaluate_run(info.run_id, _scan(data))
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
        meta = info.metadata
        print(
            f"{info.run_id:<22}{info.accuracy:>9.3f}  {meta.epochs_completed:>6}  "
            f"{meta.config.mode:<9}{info.weights_label}"
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
    bars: list[_Progress] = []

    def progress(what: str, share: float) -> None:
        # A new step is worth a line of its own in a pipe; a step's own count is not.
        if not bars:
            bars.append(_Progress(f"exporting {info.run_id} as {args.format}", 100, unit="%"))
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


# How each TrainConfig setting is spelled and typed on the command line; defaults and help
# come from TrainConfig itself.
CONFIG_ARGUMENTS = {
    "weights": ("--weights", {"metavar": "imagenet|none|FILE"}),
    "mode": ("--mode", {"choices": MODES}),
    "epochs": ("--epochs", {"type": int, "metavar": "N"}),
    "batch_size": ("--batch-size", {"type": int, "metavar": "N"}),
    "learning_rate": ("--lr", {"type": float, "metavar": "RATE"}),
    "fine_tune_learning_rate": ("--fine-tune-lr", {"type": float, "metavar": "RATE"}),
    "val_fraction": ("--val-fraction", {"type": float, "metavar": "SHARE"}),
    "patience": ("--patience", {"type": int, "metavar": "N"}),
    "seed": ("--seed", {"type": int, "metavar": "N"}),
    "precision": ("--precision", {"choices": PRECISIONS}),
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per TrainConfig setting, with the setting's own default and help."""
    for name, (flag, options) in CONFIG_ARGUMENTS.items():
        default = default_of(name)
        shown = f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
        parser.add_argument(flag, dest=name, default=default, help=help_of(name) + shown, **options)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m flower_model`."""
    from flower_model.data.download import DEFAULT_HANDLE

    parser = argparse.ArgumentParser(
        prog="python -m flower_model",
        description="Teach a pretrained ResNet50 to tell flowers apart, by transfer learning.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_arg(p: argparse.ArgumentParser, help_text: str) -> None:
        p.add_argument("--data", metavar="DIR", help=help_text)

    p = sub.add_parser("download", help="download the Kaggle flower dataset with kagglehub")
    p.add_argument(
        "--handle", default=DEFAULT_HANDLE, help=f"Kaggle dataset (default {DEFAULT_HANDLE})"
    )
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("info", help="report a dataset: photos per class, sizes, skipped files")
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "audit",
        help="find label errors, duplicates, leaks and outliers in a dataset",
        description="Audit a dataset on its cached ResNet50 features: out-of-sample "
        "probabilities from the head trained k-fold, then cleanlab's label issues, outliers and "
        "near-duplicates, exact duplicates by content, and the groups a plain split would cut.",
    )
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    p.add_argument(
        "--weights",
        default=default_of("weights"),
        metavar="imagenet|none|FILE",
        help=f"the features' weights (default {default_of('weights')})",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=AUDIT_FOLDS,
        metavar="K",
        help=f"folds of the out-of-sample training (default {AUDIT_FOLDS})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=default_of("seed"),
        metavar="N",
        help=f"the folds and the heads' seed (default {default_of('seed')})",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default_of("precision"),
        help=help_of("precision"),
    )
    p.add_argument("--again", action="store_true", help="redo a kept audit")
    p.add_argument(
        "--top", type=int, default=10, metavar="N", help="findings shown per kind (default 10)"
    )
    p.add_argument(
        "--apply",
        metavar="KINDS",
        help="record the audit's suggestions for training, for any of label,outlier,duplicate: "
        "relabel label issues to the class suggested, leave out outliers, keep one photo of "
        "each duplicate group (the photo folder is not touched)",
    )
    p.add_argument(
        "--forget",
        action="store_true",
        help="forget every decision recorded about the dataset, and stop",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("train", help="train a run; prints its id")
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    add_config_arguments(p)
    p.add_argument(
        "--ignore-decisions",
        action="store_true",
        help="train on the folder as it is, without the photos left out or relabelled",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a run on its held-out photos")
    p.add_argument("--run", default="latest", help="run id or 'latest' (default)")
    data_arg(p, "dataset folder (default: the one the run was trained on)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="classify photos; exits 1 if any could not be",
        description="Classify photos, or every photo in folders (searched recursively).",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_FOLDER")
    p.add_argument("--run", default="latest", help="run id or 'latest' (default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export",
        help="export a run for other programs; prints where",
        description="Export a run: the model with its preprocessing inside, labels.txt, "
        "model_card.md and a standalone predict.py, checked against the app's probabilities.",
    )
    p.add_argument("--run", default="latest", help="run id or 'latest' (default)")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="what to export as")
    p.add_argument(
        "--out", metavar="PATH", help="a folder, or a .zip (default ./flower-lens-RUN-FORMAT)"
    )
    p.add_argument("--replace", action="store_true", help="replace an existing export at PATH")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="list saved runs, newest first")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FlowerLensError, ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {describe_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
