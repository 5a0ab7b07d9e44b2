"""Each export format through its own runtime: size, load time, latency, agreement with the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.timing import Spread, spread, timed
from flower_model.export.exporter import export_run, load_predictor
from flower_model.inference.predict import Classifier
from flower_model.runs.store import RunInfo


@dataclass(frozen=True)
class FormatResult:
    """One export format, measured."""

    format: str
    export_seconds: float  # writing, converting and checking the export
    model_bytes: int
    load_seconds: float  # predict.py's load_model(), the runtime already imported once
    latency: Spread  # one photo (a ready uint8 224×224 array) through the runtime
    photos: int
    top1_agreement: float  # with the app's Classifier on the same photos
    max_difference: float
    int8_accuracy: float | None = None  # on the run's validation split (int8 only)
    float_accuracy: float | None = None


@dataclass(frozen=True)
class Exports:
    """Every format measured on the same run and photos."""

    source: str
    formats: tuple[FormatResult, ...]
    from_image_bytes_agreement: float | None  # SavedModel's TF-decoding signature vs the app
    from_image_bytes_max_difference: float | None


def _measure(
    info: RunInfo, fmt: str, folder: Path, images: np.ndarray, app: np.ndarray, repeats: int
) -> FormatResult:
    result, export_seconds = timed(lambda: export_run(info, fmt, folder / fmt))
    predictor = load_predictor(result.path)
    predictor.load_model()  # the runtime's import, once, is not the model's load
    run, load_seconds = timed(predictor.load_model)
    exported = np.concatenate([np.asarray(run(images[i : i + 1])) for i in range(len(images))])
    one = images[:1]
    run(one)
    latencies = [timed(lambda: run(one))[1] for _ in range(repeats)]
    quantized = result.quantized
    return FormatResult(
        format=fmt,
        export_seconds=export_seconds,
        model_bytes=result.model_bytes,
        load_seconds=load_seconds,
        latency=spread(latencies),
        photos=len(images),
        top1_agreement=float(np.mean(exported.argmax(1) == app.argmax(1))),
        max_difference=float(np.abs(exported - app).max()),
        int8_accuracy=quantized.int8_accuracy if quantized else None,
        float_accuracy=quantized.float_accuracy if quantized else None,
    )


def sample_run(sample: Path, epochs: int) -> RunInfo | None:
    """Return a run trained (random weights) on the shared flower sample, when it is here: its
    probabilities mean something, unlike a one-epoch run's, so agreement is a fair test."""
    from flower_model.data.dataset import scan_dataset
    from flower_model.model.config import TrainConfig
    from flower_model.workflows.train import train

    if not (sample / "flowers").is_dir():
        return None
    config = TrainConfig(epochs=epochs, weights="none", patience=0)
    return train(scan_dataset(sample / "flowers"), config)


def measure_exports(
    info: RunInfo,
    images: np.ndarray,
    encoded: list[bytes],
    source: str,
    formats: tuple[str, ...],
    folder: Path,
    repeats: int,
) -> Exports:
    """Return every format's figures on the same photos (`encoded`: the same photos' files)."""
    import tensorflow as tf

    app = Classifier.load(info.run_id).probabilities(images)
    measured = tuple(_measure(info, fmt, folder, images, app, repeats) for fmt in formats)
    agreement = difference = None
    if "savedmodel" in formats and encoded:
        model = tf.saved_model.load(str(folder / "savedmodel" / "saved_model"))
        signature = model.signatures["from_image_bytes"]
        decoded = signature(image_bytes=tf.constant(encoded))["output_0"].numpy()
        agreement = float(np.mean(decoded.argmax(1) == app.argmax(1)))
        difference = float(np.abs(decoded - app).max())
    return Exports(source, measured, agreement, difference)
