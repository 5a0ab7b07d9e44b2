"""Take a trained run out of the app: five formats, each checked against the app's numbers.

An export is a folder (or a .zip of it) holding the model, `labels.txt`, `model_card.md`,
`export.json` and a standalone `predict.py`. It is written under a temporary name beside its
destination and renamed only when complete and checked (parity.py): the exported model,
loaded by its own runtime through its own `predict.py`, decoding the photos with that
script's own loader, must give the app's probabilities on the run's validation photos (float
formats: within PARITY_TOLERANCE). An int8 model cannot match exactly; its agreement with the
float model and its accuracy on the whole validation split are measured and written into the
model card.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from flower_model.core import workspace
from flower_model.core.errors import FlowerLensError
from flower_model.export.formats import FORMATS, ExportError, ExportFormat, format_of
from flower_model.export.manifest import ExportManifest, ExportResult
from flower_model.export.parity import (
    PARITY_TOLERANCE,
    Progress,
    check_export,
    quantized_accuracy,
)
from flower_model.model.backbone import INPUT_SIZE
from flower_model.runs.store import RunInfo

if TYPE_CHECKING:
    pass


MANIFEST_FILE = "export.json"
LABELS_FILE = "labels.txt"
CARD_FILE = "model_card.md"
SCRIPT_FILE = "predict.py"
TEMPLATE = Path(__file__).with_name("predict_template.py")
# Beside a destination while an export is written, or while an old one is being replaced.
LEFTOVER_PREFIXES = (".partial-", ".old-")


def default_destination(run_id: str, fmt: str, folder: Path | None = None) -> Path:
    """Return where an export goes unless told: `flower-lens-<run>-<format>` in `folder`."""
    return (folder or Path.cwd()) / f"flower-lens-{run_id}-{fmt}"


def app_export_path(run_id: str, fmt: str) -> Path:
    """Return the .zip the app offers for download (kept, so the second download is instant)."""
    return workspace.home_dir() / "exports" / f"flower-lens-{run_id}-{fmt}.zip"


def forget_app_exports(run_id: str) -> None:
    """Delete the app's kept exports of a run (the run was deleted)."""
    for fmt in FORMATS:
        app_export_path(run_id, fmt).unlink(missing_ok=True)


def offered_size(info: RunInfo, fmt: str) -> tuple[int, bool]:
    """Return the bytes of a run's export for download and whether it is ready: the .zip's
    size when it is, else the model file's expected size (the run's whole classifier as a
    Keras file × the format's measured ratio)."""
    ready = app_export_path(info.run_id, fmt)
    if ready.is_file():
        return ready.stat().st_size, True
    return round(info.classifier_bytes * format_of(fmt).size_ratio), False


def packed_summary(path: Path) -> tuple[ExportManifest, str]:
    """Return the manifest and the model card inside an export's .zip (for showing it)."""
    with zipfile.ZipFile(path) as archive:
        names = {Path(name).name: name for name in archive.namelist()}
        manifest = ExportManifest.from_json(json.loads(archive.read(names[MANIFEST_FILE])))
        card = archive.read(names[CARD_FILE]).decode("utf-8")
    return manifest, card


def is_export(path: Path) -> bool:
    """Return whether a path holds a Flower Lens export (a folder or a .zip of one)."""
    if path.is_dir():
        return (path / MANIFEST_FILE).is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return any(Path(name).name == MANIFEST_FILE for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def remove_leftovers(folder: Path, name: str | None = None) -> int:
    """Remove what exports that were killed left in a folder (`.partial-*`, `.old-*`), only
    those of the export called `name` if given; return how many. Only while no process
    writes those exports (the caller holds their lock: see `core.locks`)."""
    removed = 0
    prefixes = tuple(f"{p}{name}-" for p in LEFTOVER_PREFIXES) if name else LEFTOVER_PREFIXES
    for item in folder.glob(".*") if folder.is_dir() else []:
        if item.name.startswith(prefixes):
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            removed += 1
    return removed


# --- the files beside the model -------------------------------------------------------------


def predict_script(fmt: ExportFormat) -> str:
    """Return the standalone predict.py of a format: the template with only its own loader."""
    text = TEMPLATE.read_text(encoding="utf-8")

    def keep(match: re.Match) -> str:
        return match.group(2) if match.group(1) == fmt.runtime else ""

    text = re.sub(r"# <runtime (\S+)>\n(.*?)# </runtime>\n", keep, text, flags=re.S)
    text = re.sub(r"# <dispatch>\n.*?# </dispatch>\n", "", text, flags=re.S)
    text = text.replace(f"def load_{fmt.runtime}(", "def load_model(")
    text = text.replace('RUNTIME = "keras"', f'RUNTIME = "{fmt.runtime}"')
    text = text.replace('MODEL_FILE = "model.keras"', f'MODEL_FILE = "{fmt.model_file}"')
    return text


def load_predictor(folder: Path) -> ModuleType:
    """Return an export's predict.py as a module: its `load_model()` returns the model as a
    function (uint8 batch -> probabilities), its `load_photo(path)` loads a photo for it."""
    spec = importlib.util.spec_from_file_location(
        f"flower_lens_export_{secrets.token_hex(4)}", folder / SCRIPT_FILE
    )
    if spec is None or spec.loader is None:
        raise ExportError(f"{folder / SCRIPT_FILE} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sizes(folder: Path) -> dict[str, int]:
    """Return {top-level name: bytes}, a folder counted whole."""
    sizes = {}
    for item in sorted(folder.iterdir()):
        files = [item] if item.is_file() else [p for p in item.rglob("*") if p.is_file()]
        sizes[item.name] = sum(p.stat().st_size for p in files)
    return sizes


def _zip(folder: Path, target: Path) -> None:
    """Write a folder as a .zip whose entries sit under the folder's final name."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(target.stem) / path.relative_to(folder))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# --- the export -----------------------------------------------------------------------------


def _staging(destination: Path) -> Path:
    """Return a fresh temporary folder beside the destination, or raise ExportError."""
    parent = destination.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".partial-{destination.name}-{secrets.token_hex(3)}"
        staging.mkdir()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ExportError(f"cannot write the export in {parent} ({reason})") from exc
    return staging


def _scaled(report: Progress, low: float, high: float) -> Progress:
    return lambda what, share: report(what, low + (high - low) * min(max(share, 0.0), 1.0))


def _build(info: RunInfo, chosen: ExportFormat, folder: Path, report: Progress) -> ExportManifest:
    """Write and check one export in `folder`; return its manifest (raise if it fails)."""
    from flower_model.export.model_card import model_card
    from flower_model.inference.predict import Classifier
    from flower_model.model.head import networks_of
    from flower_model.model.serving import serving_model
    from flower_model.runs.store import load_model

    report("loading the run's model", 0.0)
    classifier = Classifier(networks_of(load_model(info)), info.class_names, info)
    model = serving_model(classifier.networks.classifier)
    (folder / LABELS_FILE).write_text("\n".join(info.class_names) + "\n", encoding="utf-8")
    (folder / SCRIPT_FILE).write_text(predict_script(chosen), encoding="utf-8")
    report(f"writing the {chosen.title} model", 0.05)
    chosen.writer(model, folder / chosen.model_file, info, _scaled(report, 0.05, 0.6))
    report("checking the export against the app", 0.6)
    predictor = load_predictor(folder)
    run = predictor.load_model()
    parity, source = check_export(run, predictor.load_photo, classifier, info)
    quantized = None
    if chosen.name == "tflite-int8":
        quantized = quantized_accuracy(run, classifier, info, _scaled(report, 0.65, 0.95))
    elif parity.max_difference > PARITY_TOLERANCE or not parity.pixels_identical:
        # (A top class that differs within the tolerance is a tie, not a fault.)
        raise ExportError(
            f"the {chosen.title} export does not give the app's probabilities "
            f"(max difference {parity.max_difference:.2g} over {parity.photos} photos; "
            f"pixels {'identical' if parity.pixels_identical else 'different'}): not kept"
        )
    report("writing the model card", 0.95)
    manifest = ExportManifest(
        format=chosen.name,
        model_file=chosen.model_file,
        run_id=info.run_id,
        class_names=info.class_names,
        input_shape=(None, INPUT_SIZE, INPUT_SIZE, 3),
        input_dtype="uint8",
        weights=info.weights_label,
        validation_accuracy=info.accuracy,
        exported=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        parity=parity,
        checked_on=source,
        quantized=quantized,
    )
    card = model_card(info, chosen, _sizes(folder)[chosen.model_file], manifest)
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    text = json.dumps(manifest.to_json(), indent=1, allow_nan=False)
    (folder / MANIFEST_FILE).write_text(text, encoding="utf-8")
    return manifest


def export_run(
    info: RunInfo,
    fmt: str,
    destination: Path | None = None,
    progress: Progress | None = None,
    replace: bool = False,
) -> ExportResult:
    """Export a run: a folder, or a .zip when `destination` ends in .zip.

    Nothing is left at `destination` unless the export is complete and checked. An existing
    destination is refused, unless `replace` is set and it is an export itself.
    """
    chosen = format_of(fmt)
    report = progress or (lambda _what, _share: None)
    destination = destination or default_destination(info.run_id, chosen.name)
    as_zip = destination.suffix.lower() == ".zip"
    if destination.exists() and not replace:
        raise ExportError(f"{destination} already exists: remove it or choose another --out")
    if destination.exists() and not is_export(destination):
        raise ExportError(f"{destination} is not an export: not replaced")
    start = time.perf_counter()
    staging = _staging(destination)
    folder = staging / (destination.stem if as_zip else destination.name)
    try:
        folder.mkdir()
        manifest = _build(info, chosen, folder, report)
        files = _sizes(folder)
        built = folder
        if as_zip:
            report("packing the .zip", 0.97)
            built = staging / destination.name
            _zip(folder, built)
        report("finishing", 0.99)  # the last moment a Stop takes effect
        packed = built.stat().st_size if as_zip else None
        _publish(built, destination, replace)
    except OSError as exc:
        raise ExportError(
            f"cannot write the export to {destination} ({workspace.describe_failure(exc)})"
        ) from exc
    except FlowerLensError:
        raise
    except Exception as exc:  # each converter and runtime raises its own types
        raise ExportError(f"the {chosen.title} export failed: {_first_line(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(destination, manifest, files, time.perf_counter() - start, packed)


def _publish(built: Path, destination: Path, replace: bool) -> None:
    """Move a finished export to its destination in one rename; an old export it replaces is
    moved aside first and put back if the rename fails."""
    if not (replace and destination.exists()):
        os.replace(built, destination)
        return
    old = destination.with_name(f".old-{destination.name}-{secrets.token_hex(3)}")
    os.replace(destination, old)
    try:
        os.replace(built, destination)
    except BaseException:
        os.replace(old, destination)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
