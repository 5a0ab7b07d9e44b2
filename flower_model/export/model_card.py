"""The model card of an export: what the model was trained on, how well it does, how to call it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flower_model.model.backbone import NO_TRANSFER_LABEL
from flower_model.model.serving import INPUT_CONTRACT, OUTPUT_CONTRACT

if TYPE_CHECKING:
    from flower_model.export.formats import ExportFormat
    from flower_model.export.manifest import ExportManifest
    from flower_model.runs.store import RunInfo


def _export_versions(fmt: ExportFormat) -> dict[str, str]:
    """Return the versions of what wrote this export: a run's own list, and the runtime's."""
    from importlib.metadata import PackageNotFoundError, version

    from flower_model.runs.metadata import versions

    found = versions()
    extra = {"onnx": ["tf2onnx", "onnx", "onnxruntime"], "tflite": ["ai-edge-litert"]}
    for name in extra.get(fmt.runtime, []):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _usage(fmt: ExportFormat) -> list[str]:
    common = [
        "```python",
        "from predict import load_model, load_photo  # this folder's predict.py",
        "import numpy as np",
        "run = load_model()",
        'probabilities = run(np.stack([load_photo("rose.jpg")]))[0]',
        "```",
    ]
    if fmt.name != "savedmodel":
        return common
    return [
        *common,
        "",
        "Encoded photos straight into TensorFlow (its own decoders: see the check below):",
        "",
        "```python",
        "import tensorflow as tf",
        'model = tf.saved_model.load("saved_model")',
        'data = tf.constant([open("rose.jpg", "rb").read()])',
        'probabilities = model.signatures["from_image_bytes"](image_bytes=data)["output_0"]',
        "```",
    ]


def model_card(info: RunInfo, fmt: ExportFormat, model_bytes: int, manifest: ExportManifest) -> str:
    """Return the model card of one export of a run, as Markdown."""
    parity, quantized, checked_on = manifest.parity, manifest.quantized, manifest.checked_on
    meta = info.metadata
    exported = manifest.exported[:16].replace("T", " ")
    pixels = "the same pixels as the app" if parity.pixels_identical else "NOT the app's pixels"
    evaluation = meta.evaluation
    weights = meta.weights
    lines = [
        f"# Flower Lens flower classifier — run {info.run_id}, {fmt.title}",
        "",
        f"Tells {len(info.class_names)} kinds of flowers apart: {', '.join(info.class_names)}.",
        f"Exported {exported} by Flower Lens from run {info.run_id} "
        f"(trained {meta.created}). Model file: `{fmt.model_file}`, {model_bytes / 1e6:.1f} MB; "
        f"{fmt.summary}.",
        "",
        "## Input and output",
        "",
        f"- **Input:** {INPUT_CONTRACT}.",
        f"- **Output:** {OUTPUT_CONTRACT}.",
        "- **Inside the model:** ResNet50's preprocessing (RGB to BGR, ImageNet channel means "
        "subtracted: `keras.applications.resnet50.preprocess_input`), ResNet50, global average "
        "pooling, the head. Give it plain pixels; do not preprocess them.",
        "- **Outside the model (predict.py's `load_photo` does it exactly as the app):** the "
        "first frame, EXIF orientation applied, alpha on white, a large JPEG decoded at reduced "
        "scale, then Pillow's bilinear resize to 224×224 (the aspect ratio is not kept).",
        "",
        "## How to use it",
        "",
        f"`pip install {fmt.packages}`, then `python predict.py photo.jpg` (or `--json`). In "
        "your own program:",
        "",
        *_usage(fmt),
        "",
        "## Training",
        "",
        f"- **Backbone weights:** {weights.label}"
        + (
            " — ResNet50 started from random weights: this model did not learn by transfer "
            "learning, and its accuracy shows it."
            if weights.label == NO_TRANSFER_LABEL
            else " (transfer learning: ResNet50 frozen, the head trained on its features)."
        ),
        f"- **Mode:** {meta.config.mode}; {meta.epochs_completed} epochs ({meta.stopped}), "
        f"weights of epoch {meta.best_epoch} kept; learning rate {meta.config.learning_rate:g}, "
        f"batch size {meta.config.batch_size}, seed {meta.config.seed}.",
        f"- **Dataset:** `{meta.dataset.root}` (fingerprint {meta.dataset.fingerprint[:12]}), "
        f"{meta.dataset.images} photos; "
        + ", ".join(f"{name} {n}" for name, n in meta.dataset.classes.items())
        + ".",
        f"- **Split:** {len(meta.split.train)} training, {len(meta.split.val)} validation "
        f"photos (about {meta.split.val_fraction:.0%} of each class, seed {meta.split.seed}; "
        f"{len(meta.split.groups)} group(s) of duplicates kept on one side).",
        f"- **Decisions:** {len(meta.dataset.excluded)} photo(s) left out and "
        f"{len(meta.dataset.relabelled)} counted under another class than their folder's "
        "(the run's metadata lists them).",
        "",
        "## How well it does (validation photos, never trained on)",
        "",
        f"Accuracy **{evaluation.accuracy:.1%}** on {evaluation.count} photos "
        f"(loss {evaluation.loss:.3f}).",
        "",
        *_table(
            ["class", "precision", "recall", "F1", "photos"],
            [
                [m.name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support)]
                for m in evaluation.per_class
            ],
        ),
        "",
        "## This export, checked against the app",
        "",
        f"On {parity.photos} {checked_on}, decoded by this folder's predict.py "
        f"({pixels}) "
        f"and run by {fmt.packages.split()[0]}: largest difference from the app's "
        f"probabilities {parity.max_difference:.1e}; the same top class on "
        f"{parity.top1_agreement:.1%} of them.",
    ]
    if quantized is not None:
        lines += [
            "",
            f"On all {quantized.photos} validation photos (int8 against the float model):",
            "",
            *_table(
                ["model", "accuracy", "top class as float"],
                [
                    ["float32", f"{quantized.float_accuracy:.1%}", "—"],
                    [
                        "int8",
                        f"{quantized.int8_accuracy:.1%}",
                        f"{quantized.top1_agreement:.1%}",
                    ],
                ],
            ),
        ]
        if quantized.top1_agreement < 0.97:
            lines += [
                "",
                "**The int8 model often disagrees with the float model.** A ResNet50 without "
                "ImageNet weights amplifies the rounding of integer arithmetic; use a float "
                "export for this run.",
            ]
    versions = _export_versions(fmt)
    lines += [
        "",
        "## Versions",
        "",
        "- Trained with: " + ", ".join(f"{k} {v}" for k, v in meta.versions.items()) + ".",
        "- Exported with: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"- predict.py's decoding was checked with Pillow {versions['pillow']}; another "
        "Pillow (another libjpeg build) may decode a JPEG a grey level differently.",
        "",
    ]
    return "\n".join(lines)
