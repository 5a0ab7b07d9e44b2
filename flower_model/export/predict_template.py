"""Classify photos with this exported Flower Lens model.

    python predict.py PHOTO [PHOTO ...]          one line per photo: its top class
    python predict.py --json PHOTO [PHOTO ...]   every class's probability, as JSON

Needs only its runtime (RUNTIME below), Pillow and numpy. Each photo is decoded and resized
exactly as the Flower Lens app does, so the probabilities are the app's. A file that cannot
be read gets one line on stderr (and the exit code 1); the others are still classified.
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

RUNTIME = "keras"
MODEL_FILE = "model.keras"
HERE = Path(__file__).resolve().parent
SIZE = 224  # the model takes uint8 RGB SIZE×SIZE×3; its preprocessing is inside it
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")  # what the app reads
PRESHRINK_PIXELS = 4_000_000  # larger images are shrunk in their own mode first, as in the app
BATCH = 16
Image.MAX_IMAGE_PIXELS = None  # a 200-megapixel phone photo is decoded at reduced scale


def load_photo(path: str) -> np.ndarray:
    """Return a photo as the app gives it to the model: uint8 RGB, SIZE×SIZE×3."""
    with Image.open(path, formats=FORMATS) as opened:
        return _upright_rgb(opened)


def _upright_rgb(image: Image.Image) -> np.ndarray:
    image.seek(0)  # an animation's first frame
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (SIZE, SIZE))  # a large JPEG is decoded at a reduced scale
    image.load()
    factor = min(image.size) // (2 * SIZE)
    if image.width * image.height > PRESHRINK_PIXELS and factor >= 2:
        size = (image.width // factor, image.height // factor)
        if image.mode in ("1", "P", "RGBA", "LA", "PA") or image.mode.startswith("I;16"):
            image = image.resize(size, Image.Resampling.NEAREST)
        else:
            image = image.reduce(factor)
    image = ImageOps.exif_transpose(image)  # upright, as the camera meant it
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # 16-bit or float grey
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        if image.mode != "F":
            values = values // (257 if values.max(initial=0) > 255 else 1)
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    transparent = image.mode == "P" and "transparency" in image.info
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or transparent:  # alpha on white
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba)
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


# <runtime keras>
def load_keras():
    """Return the model as a function: uint8 batch -> probabilities (Keras 3)."""
    import keras

    model = keras.models.load_model(HERE / MODEL_FILE, compile=False, safe_mode=True)
    return lambda pixels: np.asarray(model.predict_on_batch(pixels))


# </runtime>
# <runtime savedmodel>
def load_savedmodel():
    """Return the model as a function: uint8 batch -> probabilities (TensorFlow)."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(HERE / MODEL_FILE)).signatures["serving_default"]
    return lambda pixels: next(iter(serve(tf.constant(pixels)).values())).numpy()


# </runtime>
# <runtime tflite>
def load_tflite():
    """Return the model as a function: uint8 batch -> probabilities (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(HERE / MODEL_FILE))
    interpreter.allocate_tensors()
    given = interpreter.get_input_details()[0]["index"]
    taken = interpreter.get_output_details()[0]["index"]

    def run(pixels: np.ndarray) -> np.ndarray:
        rows = []
        for one in pixels:
            interpreter.set_tensor(given, one[np.newaxis])
            interpreter.invoke()
            rows.append(interpreter.get_tensor(taken)[0].copy())
        return np.array(rows)

    return run


# </runtime>
# <runtime onnx>
def load_onnx():
    """Return the model as a function: uint8 batch -> probabilities (onnxruntime)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(HERE / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return lambda pixels: session.run(None, {name: pixels})[0]


# </runtime>
# <dispatch>
def load_model():
    """Return the model of RUNTIME (an export keeps only its own loader, named load_model)."""
    return globals()[f"load_{RUNTIME}"]()


# </dispatch>
def main(args: list[str]) -> int:
    """Print each photo's top class (or, with --json, every probability); return the exit code."""
    as_json = "--json" in args
    paths = [a for a in args if a != "--json"]
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    labels = (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()
    model, results, failed = load_model(), [], 0
    for start in range(0, len(paths), BATCH):
        loaded = []
        for path in paths[start : start + BATCH]:
            try:
                loaded.append((path, load_photo(path)))
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                failed += 1
        if not loaded:
            continue
        rows = model(np.stack([image for _, image in loaded]))
        for (path, _), row in zip(loaded, rows, strict=True):
            probabilities = dict(zip(labels, map(float, row), strict=True))
            results.append({"file": path, "probabilities": probabilities})
            if not as_json:
                top = max(probabilities, key=probabilities.get)
                print(f"{path}: {top} {probabilities[top]:.3f}")
    if as_json:
        print(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
