"""The five export formats: how each writes a run's model, and what it needs to run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flower_model.core.errors import FlowerLensError, ImageError
from flower_model.data.images import load_rgb
from flower_model.export.parity import Progress, split_photos, spread
from flower_model.model.backbone import INPUT_SIZE
from flower_model.runs.store import RunInfo

if TYPE_CHECKING:
    import keras


class ExportError(FlowerLensError):
    """A run cannot be exported in the format asked for."""


# How many training photos calibrate the int8 model's activation ranges.
CALIBRATION_PHOTOS = 200
# --- writing the model ----------------------------------------------------------------------


def _write_keras(model: keras.Model, target: Path, info: RunInfo, progress: Progress) -> None:
    model.save(target)


def _write_savedmodel(model: keras.Model, target: Path, info: RunInfo, progress: Progress) -> None:
    """Write a SavedModel with two signatures, each weight stored once.

    Not `model.export`: Keras 3.15 stores every variable twice there (keras-team/keras#23553,
    open: 185 MB instead of 94), because its tracked Keras variables and the endpoints'
    captured tf.Variables are different objects. Tracking the tf.Variables themselves lets
    TensorFlow's checkpoint see one object each.
    """
    import tensorflow as tf

    from flower_model.model.backbone import INPUT_SHAPE
    from flower_model.model.serving import image_bytes_function

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


def _write_tflite(model: keras.Model, target: Path, info: RunInfo, progress: Progress) -> None:
    model.export(str(target), format="litert", verbose=False)


def _write_tflite_int8(model: keras.Model, target: Path, info: RunInfo, progress: Progress) -> None:
    import tensorflow as tf

    photos = spread([p for p, _ in split_photos(info, "train")], CALIBRATION_PHOTOS)
    if not photos:
        raise ExportError(
            f"an int8 export is calibrated on the run's training photos, and none are left in "
            f"{info.metadata.dataset.root}: export a float format, or bring the photos back"
        )

    def calibration() -> Iterator[list[np.ndarray]]:
        for done, path in enumerate(photos):
            what = f"calibrating int8 on training photo {done + 1}/{len(photos)}"
            progress(what, done / len(photos))
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


def _write_onnx(model: keras.Model, target: Path, info: RunInfo, progress: Progress) -> None:
    model(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))  # Keras' ONNX export wants a call
    model.export(str(target), format="onnx", verbose=False)


Writer = Callable[["keras.Model", Path, RunInfo, Progress], None]


@dataclass(frozen=True)
class ExportFormat:
    """One way to take the model out of the app."""

    name: str  # as the CLI and export.json spell it
    title: str
    model_file: str  # inside the export folder
    runtime: str  # the template's loader that runs it (predict_template.py: load_<runtime>)
    packages: str  # what predict.py needs, as pip names
    summary: str
    writer: Writer
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
            _write_keras,
        ),
        ExportFormat(
            "savedmodel",
            "TensorFlow SavedModel",
            "saved_model",
            "savedmodel",
            "tensorflow pillow numpy",
            "for TensorFlow Serving and TF programs; a second signature, from_image_bytes, "
            "takes encoded photos",
            _write_savedmodel,
            1.03,
        ),
        ExportFormat(
            "tflite",
            "LiteRT (TFLite), float32",
            "model.tflite",
            "tflite",
            "ai-edge-litert pillow numpy",
            "for phones and small devices; the same numbers as the app",
            _write_tflite,
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
            _write_tflite_int8,
            0.26,
        ),
        ExportFormat(
            "onnx",
            "ONNX",
            "model.onnx",
            "onnx",
            "onnxruntime pillow numpy",
            "for onnxruntime and the many tools that read ONNX",
            _write_onnx,
            0.99,
        ),
    )
}


def format_of(name: str) -> ExportFormat:
    """Return an export format by name, or raise ExportError naming the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ExportError(
            f"no export format '{name}'; choose one of: {', '.join(FORMATS)}"
        ) from None
