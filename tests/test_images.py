"""The one image loader: odd modes, orientation, and every kind of broken file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flower_model import images
from flower_model.errors import ImageError
from flower_model.images import inspect, load_rgb


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def sideways(path: Path, width: int, height: int) -> Path:
    """Write a photo, left half red, stored with "rotate 90° clockwise to view" (orientation 6)."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6
    return save(image, path, exif=exif, quality=95)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    loaded = load_rgb(sideways(tmp_path / "rotated.jpg", 60, 40))
    assert loaded.shape == (60, 40, 3)
    # After rotating clockwise, the red half is on top.
    assert loaded[5, 20, 0] > 200 and loaded[5, 20, 1] < 60
    assert loaded[55, 20, 0] < 60


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    path = save(Image.new("L", (30, 20), 77), tmp_path / "gray.png")
    loaded = load_rgb(path)
    assert loaded.shape == (20, 30, 3)
    assert np.all(loaded == 77)


def test_transparent_pixels_are_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    loaded = load_rgb(save(image, tmp_path / "alpha.png"))
    assert tuple(loaded[5, 5]) == (255, 255, 255)
    assert tuple(loaded[0, 0]) == (0, 0, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 255, 0] + [255, 0, 0] * 255)
    image.info["transparency"] = 0
    loaded = load_rgb(save(image, tmp_path / "palette.png", transparency=0))
    assert tuple(loaded[3, 3]) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    loaded = load_rgb(path)
    assert loaded.shape == (16, 16, 3)
    assert loaded[8, 8, 0] > 200 and loaded[8, 8, 1] < 60  # cyan 0, magenta+yellow full: red


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.full((10, 10), 32768, dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    loaded = load_rgb(path)
    assert 120 <= loaded[0, 0, 0] <= 135  # half of full scale, not clipped to 255


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_rgb(path)
    assert loaded[6, 6, 0] > 200 and loaded[6, 6, 2] < 60


def test_resize_gives_model_input_size(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (320, 240), (10, 20, 30)), tmp_path / "photo.jpg")
    loaded = load_rgb(path, size=224)
    assert loaded.shape == (224, 224, 3) and loaded.dtype == np.uint8


def test_bytes_and_path_give_the_same_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = save(
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)), tmp_path / "a.png"
    )
    assert np.array_equal(load_rgb(path, size=224), load_rgb(path.read_bytes(), size=224))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageError, match="empty.jpg: the file is empty"):
        load_rgb(path)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.jpg: the file is truncated"):
        load_rgb(path)
    with pytest.raises(ImageError, match="truncated"):
        inspect(path.read_bytes(), path.name)


def test_not_an_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        load_rgb(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="gone.jpg: cannot read"):
        load_rgb(tmp_path / "gone.jpg")


def test_oversized_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Image.new("RGB", (64, 64)), tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 10)
    with pytest.raises(ImageError, match="over the"):
        load_rgb(path)


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Image.new("RGB", (100, 100)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_rgb(path)


def test_inspect_reports_size(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (33, 21)), tmp_path / "small.jpg")
    info = inspect(path.read_bytes(), path.name)
    assert (info.width, info.height) == (33, 21)


def test_a_preview_is_upright_and_at_most_its_side(tmp_path: Path) -> None:
    # A large photo stored sideways: the preview is small, and upright like the model's input.
    data = sideways(tmp_path / "big.jpg", 1200, 800).read_bytes()
    preview = images.load_preview(data, "big.jpg", max_side=300)
    assert preview.shape == (300, 200, 3)
    assert preview[10, 100, 0] > 200 and preview[290, 100, 0] < 60
    full = images.load_preview(data, "big.jpg", max_side=2000)
    assert full.shape == (1200, 800, 3)  # never enlarged
    with pytest.raises(ImageError, match="nope.png"):
        images.load_preview(b"not an image", "nope.png")
