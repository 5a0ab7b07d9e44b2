"""The standalone predict.py decodes every kind of photo exactly as the app does."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flower_model.data.images import load_rgb
from flower_model.data.synthetic import flower_photo
from flower_model.export import predict_template


def _photo(size=(320, 240), seed=0) -> Image.Image:
    return flower_photo(np.random.default_rng(seed), (200, 30, 50), size)


def _with_exif_rotation(image: Image.Image) -> Image.Image:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show upright
    image.info["exif"] = exif.tobytes()
    return image


def _cases() -> dict[str, tuple[Image.Image, str, dict]]:
    photo = _photo()
    rgba = np.asarray(photo.convert("RGBA")).copy()
    rgba[:80, :, 3] = 0
    rgba[80:160, :, 3] = 100
    wide16 = (np.linspace(0, 65535, 300 * 200).reshape(200, 300)).astype(np.uint16)
    palette = photo.convert("P")
    palette.info["transparency"] = 0
    frames = [_photo(seed=1).convert("P"), _photo(seed=2).convert("P")]
    return {
        "jpeg": (photo, "JPEG", {"quality": 90}),
        "large jpeg (reduced-scale decode)": (photo.resize((2400, 1800)), "JPEG", {}),
        "jpeg with EXIF rotation": (_with_exif_rotation(_photo((300, 200))), "JPEG", {}),
        "grey jpeg": (photo.convert("L"), "JPEG", {}),
        "cmyk jpeg": (photo.convert("CMYK"), "JPEG", {}),
        "png with alpha": (Image.fromarray(rgba), "PNG", {}),
        "16-bit png": (Image.fromarray(wide16), "PNG", {}),
        "palette png with transparency": (palette, "PNG", {}),
        "large png (shrunk first)": (photo.resize((2600, 2000)), "PNG", {}),
        "large rgba png (shrunk first)": (Image.fromarray(rgba).resize((2600, 2000)), "PNG", {}),
        "animated gif": (frames[0], "GIF", {"save_all": True, "append_images": frames[1:]}),
        "webp": (photo, "WEBP", {"quality": 80}),
        "bmp": (photo, "BMP", {}),
        "1-bit png": (photo.convert("1"), "PNG", {}),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_load_photo_is_the_apps_decode(name: str, tmp_path: Path) -> None:
    image, fmt, options = _cases()[name]
    buffer = io.BytesIO()
    if "exif" in image.info:
        options = {**options, "exif": image.info["exif"]}
    image.save(buffer, fmt, **options)
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(predict_template.load_photo(str(path)), load_rgb(path, size=224))


def test_the_templates_constants_are_the_apps() -> None:
    from flower_model.data import images
    from flower_model.model.backbone import INPUT_SIZE

    assert predict_template.SIZE == INPUT_SIZE
    assert predict_template.PRESHRINK_PIXELS == images.PRESHRINK_PIXELS
    assert predict_template.FORMATS == images.FORMATS


def test_a_200_megapixel_photo_loads_without_the_library(tmp_path: Path) -> None:
    """In a process of its own, where flower_model.data.images never lifted Pillow's bomb limit."""
    import subprocess
    import sys

    big = tmp_path / "phone.jpg"
    Image.new("RGB", (16_000, 12_500), (200, 30, 50)).save(big, quality=50)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(predict_template.__file__)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(module.load_photo({str(big)!r}).shape)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "(224, 224, 3)" and "Warning" not in done.stderr


def test_the_script_classifies_the_good_files_and_names_the_bad(tmp_path: Path) -> None:
    import json

    fake = tmp_path / "predict.py"
    source = Path(predict_template.__file__).read_text()
    fake_loader = "def load_fake():\n    return lambda pixels: pixels.mean(axis=(1, 2)) / 255\n\n\n"
    source = source.replace('RUNTIME = "keras"', 'RUNTIME = "fake"')
    fake.write_text(source.replace("def main(", fake_loader + "def main("))
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    good = tmp_path / "good.png"
    _photo().save(good)
    (tmp_path / "bad.jpg").write_text("not a photo")
    import subprocess
    import sys

    args = [sys.executable, "-I", str(fake), "--json", str(good), str(tmp_path / "bad.jpg")]
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {tmp_path / 'bad.jpg'}: ")
    (result,) = json.loads(done.stdout)
    assert result["file"] == str(good) and list(result["probabilities"]) == ["red", "green", "blue"]


def test_an_export_keeps_only_its_own_loader() -> None:
    from flower_model.export.exporter import predict_script
    from flower_model.export.formats import FORMATS

    for fmt in FORMATS.values():
        script = predict_script(fmt)
        compile(script, "predict.py", "exec")
        assert "def load_model(" in script
        assert f'MODEL_FILE = "{fmt.model_file}"' in script
        others = {f.runtime for f in FORMATS.values()} - {fmt.runtime}
        assert not any(f"def load_{other}(" in script for other in others)
        assert "<runtime" not in script and "dispatch" not in script
        imports = {
            "keras": "import keras",
            "savedmodel": "import tensorflow",
            "tflite": "ai_edge_litert",
            "onnx": "import onnxruntime",
        }
        assert imports[fmt.runtime] in script
        assert not any(imports[other] in script for other in others - {fmt.runtime})
