"""Take a trained run out of the app: five formats, each checked against the app's numbers.

An export is a folder (or a .zip of it) holding the model, `labels.txt`, `model_card.md`,
`export.json` and a standalone `predict.py`. It is written under a temporary name beside its
destination and renamed only when complete and verified: the exported model, loaded by its
own runtime through its own `predict.py`, must give the app's probabilities on the run's
validation photos (float formats: within PARITY_TOLERANCE and the same top class on every
photo). An int8 model cannot match exactly; its agreement with the float model and its
accuracy on the whole validation split are measured and written into the model card.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from flower_model import workspace
from flower_model.backbone import INPUT_SIZE
from flower_model.errors import FlowerLensError, ImageError
from flower_model.images import load_rgb
from flower_model.runs import RunInfo

if TYPE_CHECKING:
    import keras

    from flower_model.predict import Classifier


class ExportError(FlowerLensError):
    """A run cannot be exported in the format asked for."""


@dataclass(frozen=True)
class ExportFormat:
    """One way to take the model out of the app."""

    name: str  # as the CLI and export.json spell it
    title: str
    model_file: str  # inside the export folder
    runtime: str  # the template's loader that runs it (predict_template.py: load_<runtime>)
    packages: str  # what predict.py needs, as pip names
    summary: str
    # The model file's size over the run's model.keras (measured on a 5-class run): what the
    # app shows before the export is made.
    size_ratio: float = 1.0


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "keras",
            "Keras",
            "model.keras",
            "keras",
            "tensorflow keras pillow numpy",
            "the Keras 3 model, with ResNet50's preprocessing inside",
        ),
        ExportFormat(
            "savedmodel",
            "TensorFlow SavedModel",
            "saved_model",
            "savedmodel",
            "tensorflow pillow numpy",
            "for TensorFlow Serving and TF programs; a second signature, from_image_bytes, "
            "takes encoded photos",
            1.03,
        ),
        ExportFormat(
            "tflite",
            "LiteRT (TFLite), float32",
            "model.tflite",
            "tflite",
            "ai-edge-litert pillow numpy",
            "for phones and small devices; the same numbers as the app",
            0.99,
        ),
        ExportFormat(
            "tflite-int8",
            "LiteRT (TFLite), int8",
            "model_int8.tflite",
            "tflite",
            "ai-edge-litert pillow numpy",
            "integer-quantized, calibrated on the run's training photos: about a quarter of "
            "the size; its agreement with the float model is measured in the model card",
            0.26,
        ),
        ExportFormat(
            "onnx",
            "ONNX",
            "model.onnx",
            "onnx",
            "onnxruntime pillow numpy",
            "for onnxruntime and the many tools that read ONNX",
            0.99,
        ),
    )
}
# Float exports must give the app's probabilities within this, and its top class every time.
PARITY_TOLERANCE = 1e-4
# How many validation photos each export is checked on (int8: accuracy on the whole split).
CHECK_PHOTOS = 24
# How many training photos calibrate the int8 model's activation ranges.
CALIBRATION_PHOTOS = 200
MANIFEST_FILE = "export.json"
LABELS_FILE = "labels.txt"
CARD_FILE = "model_card.md"
SCRIPT_FILE = "predict.py"
TEMPLATE = Path(__file__).with_name("predict_template.py")

# progress(what is being done, share done from 0 to 1)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Parity:
    """How an exported model's probabilities compare with the app's on the same photos."""

    photos: int
    max_difference: float  # max |p_export - p_app| over every photo and class
    top1_agreement: float  # share of photos with the same top class


@dataclass(frozen=True)
class QuantizedAccuracy:
    """An int8 model against its float model on the run's whole validation split."""

    photos: int
    float_accuracy: float
    int8_accuracy: float
    top1_agreement: float


@dataclass(frozen=True)
class ExportResult:
    """A finished export: where it is, what it holds, and how it was checked."""

    path: Path
    format: str
    run_id: str
    files: dict[str, int]  # name -> bytes
    seconds: float
    parity: Parity
    quantized: QuantizedAccuracy | None = None
    check_source: str = "validation photos"

    @property
    def bytes(self) -> int:
        """Return the size of everything exported."""
        return sum(self.files.values())

    @property
    def model_bytes(self) -> int:
        """Return the size of the model itself."""
        return self.files.get(FORMATS[self.format].model_file, 0)


def format_of(name: str) -> ExportFormat:
    """Return an export format by name, or raise ExportError naming the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ExportError(
            f"no export format '{name}'; choose one of: {', '.join(FORMATS)}"
        ) from None


def default_destination(run_id: str, fmt: str, folder: Path | None = None) -> Path:
    """Return where an export goes unless told: `flower-lens-<run>-<format>` in `folder`."""
    return (folder or Path.cwd()) / f"flower-lens-{run_id}-{fmt}"


def app_export_path(run_id: str, fmt: str) -> Path:
    """Return the .zip the app offers for download (kept, so the second download is instant)."""
    return workspace.home_dir() / "exports" / f"flower-lens-{run_id}-{fmt}.zip"


def packed_summary(path: Path) -> tuple[dict, str]:
    """Return the manifest and the model card inside an export's .zip (for showing it)."""
    with zipfile.ZipFile(path) as archive:
        names = {Path(name).name: name for name in archive.namelist()}
        manifest = json.loads(archive.read(names[MANIFEST_FILE]))
        card = archive.read(names[CARD_FILE]).decode("utf-8")
    return manifest, card


# --- photos ---------------------------------------------------------------------------------


def _label_of(path: str, class_names: Sequence[str]) -> int:
    return class_names.index(path.split("/")[0])


def _split_photos(info: RunInfo, which: str) -> list[tuple[Path, int]]:
    """Return the run's training or validation photos that are still there, with labels."""
    meta = info.metadata
    root = Path(meta.dataset.root)
    paths = meta.split.train if which == "train" else meta.split.val
    found = [(root / p, _label_of(p, meta.class_names)) for p in paths]
    return [(path, label) for path, label in found if path.is_file()]


def _spread(items: Sequence, count: int) -> list:
    """Return up to `count` items taken evenly along the sequence (every class, in a split)."""
    if len(items) <= count:
        return list(items)
    return [items[int(i * len(items) / count)] for i in range(count)]


def _loaded(paths: Sequence[Path]) -> tuple[list[Path], np.ndarray]:
    """Return the photos that load, as the app loads them, and their uint8 batch."""
    kept, images = [], []
    for path in paths:
        try:
            images.append(load_rgb(path, size=INPUT_SIZE))
        except ImageError:
            continue
        kept.append(path)
    return kept, np.stack(images) if images else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)


def check_photos(info: RunInfo, count: int = CHECK_PHOTOS) -> tuple[list[Path], np.ndarray, str]:
    """Return the photos an export is checked on: validation photos of the run, or, when its
    dataset is gone, generated flower-like pictures (the check compares numbers, not answers)."""
    paths, batch = _loaded(_spread([p for p, _ in _split_photos(info, "val")], count))
    if len(paths):
        return paths, batch, "validation photos"
    from flower_model.synthetic import COLOURS, flower_photo

    rng = np.random.default_rng(0)
    colours = list(COLOURS.values())
    images = [
        np.asarray(
            flower_photo(rng, colours[i % len(colours)]).resize((INPUT_SIZE, INPUT_SIZE)),
            dtype=np.uint8,
        )
        for i in range(count)
    ]
    return [], np.stack(images), "generated pictures (the run's photos are gone)"


# --- writing the model ----------------------------------------------------------------------


def _write_keras(model: keras.Model, target: Path, **_: object) -> None:
    model.save(target)


def _write_savedmodel(model: keras.Model, target: Path, **_: object) -> None:
    """Write a SavedModel with two signatures, each weight stored once.

    Not `model.export`: Keras 3.15 stores every variable twice there (keras-team/keras#23553,
    open: 185 MB instead of 94), because its tracked Keras variables and the endpoints'
    captured tf.Variables are different objects. Tracking the tf.Variables themselves lets
    TensorFlow's checkpoint see one object each.
    """
    import tensorflow as tf

    from flower_model.backbone import INPUT_SHAPE
    from flower_model.serving import image_bytes_function

    pixels = tf.TensorSpec((None, *INPUT_SHAPE), tf.uint8, name="pixels")
    module = tf.Module()
    module.weights = [variable.value for variable in model.variables]
    module.serve = tf.function(
        lambda pixels: model(pixels, training=False), input_signature=[pixels]
    )
    module.from_image_bytes = image_bytes_function(model)
    signatures = {
        "serving_default": module.serve.get_concrete_function(),
        "from_image_bytes": module.from_image_bytes.get_concrete_function(),
    }
    tf.saved_model.save(module, str(target), signatures=signatures)


def _write_tflite(model: keras.Model, target: Path, **_: object) -> None:
    model.export(str(target), format="litert", verbose=False)


def _write_tflite_int8(
    model: keras.Model, target: Path, info: RunInfo, progress: Progress, **_: object
) -> None:
    import tensorflow as tf

    photos = _spread([p for p, _ in _split_photos(info, "train")], CALIBRATION_PHOTOS)
    if not photos:
        raise ExportError(
            f"an int8 export is calibrated on the run's training photos, and none are left in "
            f"{info.metadata.dataset.root}: export a float format, or bring the photos back"
        )

    def calibration() -> Iterator[list[np.ndarray]]:
        for done, path in enumerate(photos):
            progress(
                f"calibrating int8 on training photo {done + 1}/{len(photos)}", done / len(photos)
            )
            try:
                yield [load_rgb(path, size=INPUT_SIZE)[np.newaxis]]
            except ImageError:
                continue

    model.export(
        str(target),
        format="litert",
        verbose=False,
        optimizations=[tf.lite.Optimize.DEFAULT],
        representative_dataset=calibration,
    )


def _write_onnx(model: keras.Model, target: Path, **_: object) -> None:
    model(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))  # Keras' ONNX export wants a call
    model.export(str(target), format="onnx", verbose=False)


_WRITERS = {
    "keras": _write_keras,
    "savedmodel": _write_savedmodel,
    "tflite": _write_tflite,
    "tflite-int8": _write_tflite_int8,
    "onnx": _write_onnx,
}


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
    """Return an export's predict.py as a module (its load_model and load_photo)."""
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
                relative = path.relative_to(folder)
                archive.write(path, Path(target.stem) / relative)


# --- checks ---------------------------------------------------------------------------------


def _probabilities(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    rows = [np.asarray(run(batch[i : i + 16]), dtype=np.float64) for i in range(0, len(batch), 16)]
    return np.concatenate(rows) if rows else np.zeros((0, 0))


def compare(exported: np.ndarray, app: np.ndarray) -> Parity:
    """Return how exported probabilities compare with the app's for the same photos."""
    return Parity(
        photos=len(app),
        max_difference=float(np.abs(exported - app).max()) if len(app) else 0.0,
        top1_agreement=float(np.mean(exported.argmax(1) == app.argmax(1))) if len(app) else 1.0,
    )


def _float_probabilities(
    classifier: Classifier, paths: Sequence[Path], info: RunInfo, progress: Progress
) -> np.ndarray:
    """Return the float model's probabilities of photos through the float32 feature cache
    (ResNet50 runs only for photos it has not seen at this precision)."""
    from flower_model.extractor import FeatureExtractor
    from flower_model.features import FeatureCache, extract_features

    extractor = FeatureExtractor.create(
        classifier.networks.resnet, "float32", identity=info.metadata.weights.identity
    )
    hashes = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]

    def step(done: int, total: int) -> None:
        progress(f"float model on validation photo {done}/{total}", done / max(total, 1))

    features, _ = extract_features(
        list(paths), hashes, extractor, FeatureCache(extractor.cache_key), progress=step
    )
    return classifier.networks.head.predict(features, verbose=0)


def _quantized_accuracy(
    predictor: ModuleType, classifier: Classifier, info: RunInfo, progress: Progress
) -> QuantizedAccuracy | None:
    """Return the int8 model against the float one on every validation photo still there."""
    photos = _split_photos(info, "val")
    if not photos:
        return None
    run = predictor.load_model()
    int8, labels, kept = [], [], []
    for done, (path, label) in enumerate(photos):
        progress(f"int8 model on validation photo {done + 1}/{len(photos)}", done / len(photos))
        try:
            image = load_rgb(path, size=INPUT_SIZE)
        except ImageError:
            continue
        int8.append(np.asarray(run(image[np.newaxis]))[0])
        labels.append(label)
        kept.append(path)
    if not kept:
        return None
    quantized = np.array(int8)
    floats = _float_probabilities(classifier, kept, info, progress)
    truth = np.array(labels)
    return QuantizedAccuracy(
        photos=len(kept),
        float_accuracy=float(np.mean(floats.argmax(1) == truth)),
        int8_accuracy=float(np.mean(quantized.argmax(1) == truth)),
        top1_agreement=float(np.mean(quantized.argmax(1) == floats.argmax(1))),
    )


# --- the export -----------------------------------------------------------------------------


def _quiet(progress: Progress | None) -> Progress:
    return progress or (lambda _what, _share: None)


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


def export_run(
    info: RunInfo,
    fmt: str,
    destination: Path | None = None,
    progress: Progress | None = None,
    replace: bool = False,
) -> ExportResult:
    """Export a run: a folder, or a .zip when `destination` ends in .zip.

    Nothing is left at `destination` unless the export is complete and checked; an existing
    destination is refused unless `replace` is set.
    """
    from flower_model.head import networks_of
    from flower_model.model_card import model_card
    from flower_model.predict import Classifier
    from flower_model.runs import load_model
    from flower_model.serving import serving_model

    chosen = format_of(fmt)
    report = _quiet(progress)
    destination = destination or default_destination(info.run_id, chosen.name)
    as_zip = destination.suffix.lower() == ".zip"
    if destination.exists() and not replace:
        raise ExportError(f"{destination} already exists: remove it or choose another --out")
    start = time.perf_counter()
    staging = _staging(destination)
    folder = staging / (destination.stem if as_zip else destination.name)
    try:
        folder.mkdir()
        report("loading the run's model", 0.0)
        classifier = Classifier(networks_of(load_model(info)), info.class_names, info)
        model = serving_model(classifier.networks.classifier)
        (folder / LABELS_FILE).write_text("\n".join(info.class_names) + "\n", encoding="utf-8")
        (folder / SCRIPT_FILE).write_text(predict_script(chosen), encoding="utf-8")
        report(f"writing the {chosen.title} model", 0.05)
        try:
            _WRITERS[chosen.name](
                model, folder / chosen.model_file, info=info, progress=_scaled(report, 0.05, 0.6)
            )
        except (ExportError, OSError):
            raise
        except Exception as exc:  # each converter raises its own types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ExportError(f"the {chosen.title} converter failed: {first}") from exc
        report("checking the export against the app", 0.6)
        paths, batch, source = check_photos(info)
        predictor = load_predictor(folder)
        parity = compare(
            _probabilities(predictor.load_model(), batch), classifier.probabilities(batch)
        )
        quantized = None
        if chosen.name == "tflite-int8":
            quantized = _quantized_accuracy(
                predictor, classifier, info, _scaled(report, 0.65, 0.95)
            )
        elif parity.max_difference > PARITY_TOLERANCE or parity.top1_agreement < 1.0:
            raise ExportError(
                f"the {chosen.title} export does not give the app's probabilities "
                f"(max difference {parity.max_difference:.2g} over {parity.photos} photos): "
                "not kept"
            )
        report("writing the model card", 0.95)
        model_bytes = _sizes(folder)[chosen.model_file]
        card = model_card(info, chosen, model_bytes, parity, quantized, source)
        (folder / CARD_FILE).write_text(card, encoding="utf-8")
        manifest = {
            "format": chosen.name,
            "model_file": chosen.model_file,
            "run_id": info.run_id,
            "class_names": list(info.class_names),
            "input": {"shape": [None, INPUT_SIZE, INPUT_SIZE, 3], "dtype": "uint8"},
            "parity": asdict(parity),
            "quantized": asdict(quantized) if quantized else None,
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        files = _sizes(folder)
        if as_zip:
            report("packing the .zip", 0.98)
            _zip(folder, staging / destination.name)
            _publish(staging / destination.name, destination, replace)
        else:
            _publish(folder, destination, replace)
    except OSError as exc:
        raise ExportError(
            f"cannot write the export to {destination} ({workspace.describe_failure(exc)})"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report("done", 1.0)
    seconds = time.perf_counter() - start
    return ExportResult(
        destination, chosen.name, info.run_id, files, seconds, parity, quantized, source
    )


def _scaled(report: Progress, low: float, high: float) -> Progress:
    return lambda what, share: report(what, low + (high - low) * min(max(share, 0.0), 1.0))


def _publish(built: Path, destination: Path, replace: bool) -> None:
    """Move a finished export to its destination in one rename (the old one replaced last)."""
    if destination.exists() and replace:
        old = destination.with_name(f".old-{destination.name}-{secrets.token_hex(3)}")
        os.replace(destination, old)
        os.replace(built, destination)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        return
    os.replace(built, destination)
