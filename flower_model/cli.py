"""The command line: download | info | train | evaluate | predict | runs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from flower_model.config import MODES, TrainConfig, default_of, help_of
from flower_model.errors import FlowerLensError
from flower_model.precision import PRECISIONS
from flower_model.workspace import DATA_ENV


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter is not for the user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _data_dir(args: argparse.Namespace) -> Path:
    value = args.data or os.environ.get(DATA_ENV)
    if not value:
        raise FlowerLensError(
            f"no dataset given: pass --data DIR (a folder with one sub-folder per class), "
            f"set ${DATA_ENV}, or run 'python -m flower_model download' first"
        )
    return Path(value)


def _bar(desc: str, total: int | None = None, unit: str = "img"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True, dynamic_ncols=True)


def _scan(path: Path):
    from flower_model.data import scan_dataset

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _bar("checking photos", total)
        bar.n = done
        bar.refresh()

    try:
        return scan_dataset(path, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def cmd_download(args: argparse.Namespace) -> int:
    from flower_model.data import find_class_root
    from flower_model.download import download_dataset

    folder = download_dataset(args.handle)
    print(find_class_root(folder))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from flower_model.backbone import weights_status
    from flower_model.data import dataset_summary

    summary = dataset_summary(_scan(_data_dir(args)))
    if args.json:
        print(json.dumps(summary, indent=1))
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

    from flower_model.events import CancelToken
    from flower_model.train import train

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    dataset = _scan(_data_dir(args))
    cancel = CancelToken()
    # The first Ctrl-C stops after the current batch and keeps the best completed epoch.
    signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    bars: dict[str, object] = {}

    def on_event(event) -> None:
        if event.kind == "extract":
            bar = bars.get("extract") or bars.setdefault("extract", _bar("features", event.total))
            bar.n = event.done
            bar.refresh()
        elif event.kind == "phase":
            if "extract" in bars and event.message.startswith("features:"):
                bars.pop("extract").close()
            print(event.message, file=sys.stderr)
        elif event.kind == "batch":
            bar = bars.get("train") or bars.setdefault(
                "train", _bar("training", event.epochs * event.batches, unit="batch")
            )
            bar.n = (event.epoch - 1) * event.batches + event.batch
            bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.loss:.3f}")
        elif event.kind == "epoch" and "train" in bars:
            bars["train"].write(
                f"epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f} "
                f"acc {event.accuracy:.3f}  val_loss {event.val_loss:.4f} "
                f"val_acc {event.val_accuracy:.3f}",
                file=sys.stderr,
            )

    try:
        info = train(dataset, config, on_event=on_event, cancel=cancel)
    finally:
        for bar in bars.values():
            bar.close()
    meta = info.metadata
    print(
        f"run {info.run_id}: validation accuracy {info.accuracy:.3f} "
        f"({meta.epochs_completed} epochs, {meta.stopped}, weights {info.weights_label}, "
        f"learning rate {meta.config.learning_rate:g})",
        file=sys.stderr,
    )
    print(info.run_id)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flower_model.evaluate import evaluate_run
    from flower_model.runs import get_run

    info = get_run(args.run)
    data = Path(args.data) if args.data else Path(info.metadata.dataset.root)
    evaluation = evaluate_run(info.run_id, _scan(data))
    if args.json:
        print(json.dumps({"run": info.run_id, **evaluation.to_json()}, indent=1))
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
    from flower_model.predict import Classifier, Failure

    classifier = Classifier.load(args.run)
    results = classifier.classify([Path(p) for p in args.photos])
    failed = sum(isinstance(r, Failure) for r in results)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    else:
        for result in results:
            if isinstance(result, Failure):
                print(f"{result.name}: error: {result.message}")
                continue
            note = "" if result.confident else "  (not confident: maybe none of these)"
            print(f"{result.name}: {result.top_class} {result.top_probability:.3f}{note}")
    return 1 if failed == len(results) else 0


def cmd_runs(args: argparse.Namespace) -> int:
    from flower_model.runs import list_runs

    runs = list_runs()
    if args.json:
        print(json.dumps([info.metadata.to_json() for info in runs], indent=1))
        return 0
    if not runs:
        print("no runs yet: python -m flower_model train --data DIR", file=sys.stderr)
        return 0
    print(f"{'run':<22}{'accuracy':>9}  {'epochs':>6}  {'mode':<9}weights")
    for info in runs:
        meta = info.metadata
        print(
            f"{info.run_id:<22}{info.accuracy:>9.3f}  {meta.epochs_completed:>6}  "
            f"{meta.config.mode:<9}{info.weights_label}"
        )
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
    from flower_model.download import DEFAULT_HANDLE

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

    p = sub.add_parser("train", help="train a run; prints its id")
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a run on its held-out photos")
    p.add_argument("--run", default="latest", help="run id or 'latest' (default)")
    data_arg(p, "dataset folder (default: the one the run was trained on)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify photos")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--run", default="latest", help="run id or 'latest' (default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("runs", help="list saved runs, newest first")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FlowerLensError, ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
