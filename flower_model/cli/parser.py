"""The command line's verbs and options; the training options come from TrainConfig."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flower_model.audit.findings import FOLDS as AUDIT_FOLDS
from flower_model.cli.commands import (
    cmd_audit,
    cmd_download,
    cmd_evaluate,
    cmd_export,
    cmd_extract,
    cmd_info,
    cmd_predict,
    cmd_runs,
    cmd_train,
    cmd_tune,
    cmd_workspace,
)
from flower_model.core.cluster import CLUSTER_ENV
from flower_model.core.workspace import DATA_ENV
from flower_model.export.formats import FORMATS as EXPORT_FORMATS
from flower_model.model.config import setting_options
from flower_model.model.search import FOLDS as TUNE_FOLDS


def add_config_arguments(
    parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None
) -> None:
    """Add one option per TrainConfig setting (or the settings named in `only`), with the
    setting's own flag, type, default and help (model.config.setting_options: the one place
    they are written)."""
    for option in setting_options():
        if only is not None and option.name not in only:
            continue
        default = option.default
        shown = f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
        extra = {"choices": option.choices} if option.choices else {"metavar": option.metavar}
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.type,
            default=default,
            help=option.help + shown,
            **extra,
        )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m flower_model`."""
    from flower_model.data.download import DEFAULT_HANDLE

    parser = argparse.ArgumentParser(
        # Spelled as it was called: the console script, or the module.
        prog="flower-lens" if Path(sys.argv[0]).name == "flower-lens" else "python -m flower_model",
        description="Teach a pretrained ResNet50 to tell flowers apart, by transfer learning.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_arg(p: argparse.ArgumentParser, help_text: str) -> None:
        p.add_argument("--data", metavar="DIR", help=help_text)

    def cluster_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--cluster",
            metavar="ADDRESS",
            help=f"compute features on the Ray cluster at ADDRESS, e.g. 10.0.0.5:6379 "
            f"(default ${CLUSTER_ENV}; unset: on this machine)",
        )

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
    add_config_arguments(p, only=("weights", "seed", "precision"))
    p.add_argument(
        "--folds",
        type=int,
        default=AUDIT_FOLDS,
        metavar="K",
        help=f"folds of the out-of-sample training (default {AUDIT_FOLDS})",
    )
    cluster_arg(p)
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

    p = sub.add_parser(
        "extract",
        help="compute a dataset's features ahead of training (here or on a cluster)",
        description="Fill the feature cache with ResNet50's features of every photo of a "
        "dataset, so that a training, an audit or the app's first click reads them at once. "
        "Only the photos the cache lacks are computed; Ctrl-C stops, and the next run goes "
        "on where this one stopped.",
    )
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    add_config_arguments(p, only=("weights", "seed", "precision"))
    cluster_arg(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "tune",
        help="search the training settings by cross-validation; prints how to train with them",
        description="Search the head's learning rate, batch size and epochs (and, if asked, "
        f"its dropout rate) with Optuna: each trial is scored by its {TUNE_FOLDS}-fold "
        "cross-validated held-out loss (accuracy beside) on the cached features of the photos "
        "a run would train on (its held-out photos are never seen); a hopeless trial is cut "
        "short at the epoch it falls behind. A "
        "learning-rate range test runs first. The first trial is the settings given. Ctrl-C "
        "stops after the current batch and keeps the trials done.",
    )
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    p.add_argument("--trials", type=int, default=30, metavar="N", help="trials to run (default 30)")
    p.add_argument("--minutes", type=float, metavar="M", help="stop the search after M minutes")
    p.add_argument(
        "--search-dropout",
        action="store_true",
        help="search the dropout rate too (the seed's model has 0.2: another leaves it)",
    )
    add_config_arguments(p)
    p.add_argument(
        "--ignore-decisions",
        action="store_true",
        help="search on the folder as it is, without the photos left out or relabelled",
    )
    p.add_argument("--json", action="store_true", help="print the search as JSON")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("train", help="train a run; prints its id")
    data_arg(p, f"dataset folder, one sub-folder per class (default ${DATA_ENV})")
    add_config_arguments(p)
    cluster_arg(p)
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

    p = sub.add_parser(
        "workspace",
        help="for the host: the uploaded datasets by owner, size and last use, and what the "
        "workspace's folders take; prune or delete uploads",
    )
    p.add_argument("--owner", help="list only this owner's uploads (as listed)")
    p.add_argument(
        "--prune-days",
        type=float,
        metavar="DAYS",
        help="delete the uploads nobody opened or added to for DAYS days",
    )
    p.add_argument("--delete", metavar="DATASET", help="delete one uploaded dataset (its name)")
    p.add_argument("--delete-run", metavar="RUN", help="delete one saved run (its whole id)")
    p.add_argument(
        "--prune-caches-days",
        type=float,
        metavar="DAYS",
        help="delete the caches (features, scans, audits, near-duplicates, exports) nothing "
        "wrote for DAYS days: they are computed again when next needed",
    )
    p.add_argument(
        "--prune-runs-days",
        type=float,
        metavar="DAYS",
        help="delete the runs trained more than DAYS days ago (with --owner: theirs alone)",
    )
    p.set_defaults(func=cmd_workspace)
    return parser
