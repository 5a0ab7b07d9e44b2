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

from flower_model.errors import FlowerLensError
from flower_model.inference import PRECISIONS

DATA_ENV = "FLOWER_LENS_DATA"


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
    from flower_model.data import download_dataset, find_class_root

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
    from flower_model.train import CancelToken, TrainConfig, train

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        patience=args.patience,
        mode=args.mode,
        weights=args.weights,
        precision=args.precision,
    )
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
    label = info.weights_label
    print(
        f"run {info.run_id}: validation accuracy {info.accuracy:.3f} "
        f"({info.metadata['epochs_completed']} epochs, {info.metadata['stopped']}, "
        f"weights {label})",
        file=sys.stderr,
    )
    print(info.run_id)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flower_model.evaluate import evaluate_run
    from flower_model.runs import get_run

    info = get_run(args.run)
    data = Path(args.data) if args.data else Path(info.metadata["dataset"]["root"])
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
        print(json.dumps([info.metadata for info in runs], indent=1))
        return 0
    if not runs:
        print("no runs yet: python -m flower_model train --data DIR", file=sys.stderr)
        return 0
    print(f"{'run':<22}{'accuracy':>9}  {'epochs':>6}  {'mode':<9}weights")
    for info in runs:
        accuracy = f"{info.accuracy:.3f}" if info.accuracy is not None else "-"
        mode = info.metadata["config"]["mode"]
        epochs = info.metadata["epochs_completed"]
        print(f"{info.run_id:<22}{accuracy:>9}  {epochs:>6}  {mode:<9}{info.weights_label}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m flower_model`."""
    from flower_model.data import DEFAULT_HANDLE

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
    p.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (default; Keras cache, $FLOWER_LENS_WEIGHTS or download), a weights "
        "file, or 'none' (random start: no transfer learning)",
    )
    p.add_argument(
        "--mode",
        choices=["features", "finetune"],
        default="features",
        help="features: train the head on cached ResNet50 features (fast, default); "
        "finetune: augment and train conv5 + head on images (slow)",
    )
    p.add_argument("--epochs", type=int, default=20, help="at most this many epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default 1e-3 for features, 1e-4 for features with --weights none, "
        "1e-5 for finetune)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    p.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after this many epochs without val_loss improvement; 0: never",
    )
    p.add_argument("--seed", type=int, default=42, help="split and initialisation seed")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="ResNet50's arithmetic when extracting features; auto (default): bfloat16 where "
        "the CPU computes it natively and its features agree with float32 ones, else float32",
    )
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
