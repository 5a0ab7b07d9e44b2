"""The one image loader: odd modes, orientation, and every kind of broken file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from flower_model.core.errors import ImageError
from flower_model.data import images
from flower_model.data.images import inspect, load_rgb
from tests.conftest import REPO


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


def test_a_header_declaring_too_many_pixels_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(Image.new("RGB", (100, 100)), tmp_path / "bomb.png")
    monkeypatch.setattr(images, "MAX_DECLARED_PIXELS", 1000)
    with pytest.raises(ImageError, match="bomb.png: 100×100 is .* too many to decode safely"):
        load_rgb(path)


def test_a_photo_over_the_memory_budget_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(Image.new("RGBA", (300, 200)), tmp_path / "wide.png")
    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 300 * 200 * 4 - 1)
    with pytest.raises(ImageError, match=r"wide.png: 300×200 pixels \(RGBA\) would need .*limit"):
        load_rgb(path, size=224)
    with pytest.raises(ImageError, match="limit"):
        inspect(path.read_bytes(), path.name)
    # A grey image of the same size needs a quarter of the memory, and fits.
    grey = save(Image.new("L", (300, 200), 90), tmp_path / "grey.png")
    assert load_rgb(grey, size=224)[0, 0, 0] == 90


def jpeg_bytes(width: int, height: int, colour=(200, 30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_200_megapixel_jpeg_is_decoded_at_reduced_scale_without_warnings() -> None:
    data = jpeg_bytes(16400, 12300)  # 201.7 megapixels, as large phones take them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail here
        photo = load_rgb(data, size=224, name="phone.jpg")
        preview = images.load_preview(data, "phone.jpg")
        info = inspect(data, "phone.jpg")
    assert photo.shape == (224, 224, 3)
    assert tuple(photo[100, 100]) == pytest.approx((200, 30, 40), abs=4)
    assert preview.shape == (480, 640, 3)
    assert (info.width, info.height) == (16400, 12300)


@pytest.mark.parametrize(
    "image, name",
    [
        (Image.new("RGB", (60000, 2), (0, 90, 0)), "strip.jpg"),
        (Image.new("RGB", (2, 60000), (0, 90, 0)), "pole.png"),
        (Image.new("I;16", (50, 40), 40000), "deep.png"),
        (Image.new("1", (9400, 9400), 1), "onebit.png"),
        (Image.new("P", (3000, 2000), 7), "palette.gif"),
    ],
    ids=[
        "60000x2 jpeg",
        "2x60000 png",
        "16-bit png",
        "1-bit 9400x9400 png",
        "palette gif",
    ],
)
def test_odd_shapes_and_modes_give_a_model_input_and_a_preview(image, name: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions()[Path(name).suffix])
    data = buffer.getvalue()
    assert load_rgb(data, size=224, name=name).shape == (224, 224, 3)
    preview = images.load_preview(data, name)
    assert preview.dtype == np.uint8 and preview.ndim == 3 and preview.shape[2] == 3
    assert min(preview.shape[:2]) >= 1 and max(preview.shape[:2]) <= images.PREVIEW_SIDE


def test_formats_other_than_the_five_are_refused_whatever_the_name(tmp_path: Path) -> None:
    path = save(Image.new("F", (30, 20), 1.5), tmp_path / "float.png", format="TIFF")
    with pytest.raises(ImageError, match=r"float.png: not an image this app reads \(JPEG, PNG"):
        load_rgb(path)


def test_a_large_progressive_jpeg_is_refused_for_its_real_cost() -> None:
    # libjpeg keeps a progressive file's coefficients at full size even when it decodes at
    # 1/8 scale, so the budget counts the full size for them.
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (9, 90, 9)).save(buffer, "JPEG", progressive=True)
    with pytest.raises(ImageError, match=r"6000×6000 pixels \(progressive JPEG\) would need"):
        load_rgb(buffer.getvalue(), size=224, name="big.jpg")
    small = io.BytesIO()
    Image.new("RGB", (3000, 2000), (9, 90, 9)).save(small, "JPEG", progressive=True)
    assert load_rgb(small.getvalue(), size=224).shape == (224, 224, 3)


def test_a_phones_multi_picture_jpeg_is_decoded_at_reduced_scale() -> None:
    # 54 megapixels: over the budget at full size, fine at the reduced scale JPEGs get.
    frames = [Image.new("RGB", (9000, 6000), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    photo = load_rgb(data, size=224, name="phone.jpg")
    assert photo[100, 100, 0] > 150 and photo[100, 100, 2] < 60  # the first picture
    assert inspect(data, "phone.jpg").width == 9000


def test_no_more_decodes_run_at_once_than_there_are_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, most, lock = 0, 0, threading.Lock()
    real_open = images._open

    def slow_open(data: bytes, name: str) -> Image.Image:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return real_open(data, name)

    monkeypatch.setattr(images, "_open", slow_open)
    data = jpeg_bytes(64, 48)
    with ThreadPoolExecutor(max_workers=images.DECODE_SLOTS * 3) as pool:
        list(pool.map(lambda _: load_rgb(data, size=224), range(images.DECODE_SLOTS * 6)))
    assert most == images.DECODE_SLOTS


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


# Decodes one file in a fresh interpreter and prints how much its peak memory grew.
MEASURE = """
import io, resource, sys
from pathlib import Path
from PIL import Image
from flower_model.data.images import load_preview, load_rgb
path = Path(sys.argv[1])
data = path.read_bytes()
small = io.BytesIO()
Image.new("RGB", (8, 8)).save(small, "PNG")
load_rgb(small.getvalue(), size=224)  # the code paths' own allocations are not the photo's
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
load_rgb(data, size=224, name=path.name)
load_preview(data, path.name)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Image.new("1", (9400, 9400), 1), "onebit.png"),  # the 22 KB file
        (lambda: Image.new("RGBA", (5790, 5790), (9, 9, 9, 9)), "alpha.png"),  # at the budget
        (lambda: Image.new("I;16", (8000, 8000), 300), "deep.png"),  # at the budget
        (lambda: Image.new("RGB", (12000, 8400), (9, 9, 9)), "phone.jpg"),  # 100 megapixels
    ],
    ids=["1-bit 88 MP png", "RGBA 33 MP png", "16-bit 64 MP png", "100 MP jpeg"],
)
def test_the_worst_accepted_photos_cost_at_most_150_mb(make, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    make().save(path)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    extra_mb = float(result.stdout.strip())
    assert extra_mb <= 150, f"{name} took {extra_mb:.0f} MB of extra peak memory"


def encoded(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    """Return a small image of a mode and size, encoded in a format, or b"" if the format
    cannot hold that mode."""
    rng = np.random.default_rng(size[0] * 7919 + size[1])
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    image = image.convert(mode) if mode not in ("I;16",) else image.convert("L").convert("I;16")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return b""
    return buffer.getvalue()


FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
MODES = ("RGB", "L", "1", "P", "RGBA", "LA", "I;16", "CMYK", "I", "F")


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """Bytes that are an image of some format, mode and extreme-ish size, then perhaps cut
    short, bit-flipped, or given garbage in place of some bytes; or no image at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2048))
    width = draw(st.sampled_from((1, 2, 3, 17, 64, 301)))
    height = draw(st.sampled_from((1, 2, 5, 31, 64, 257)))
    data = encoded(draw(st.sampled_from(MODES)), (width, height), draw(st.sampled_from(FORMATS)))
    if not data:
        return draw(st.binary(min_size=1, max_size=256))
    damage = draw(st.sampled_from(("none", "truncate", "flip", "splice")))
    if damage == "truncate":
        return data[: draw(st.integers(1, max(1, len(data) - 1)))]
    if damage == "flip":
        buffer = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            buffer[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(buffer)
    if damage == "splice":
        start = draw(st.integers(0, len(data) - 1))
        return data[:start] + draw(st.binary(min_size=1, max_size=64)) + data[start + 8 :]
    return data


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 400)),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=damaged_images())
def test_any_bytes_give_an_rgb_photo_or_an_image_error(data: bytes) -> None:
    # The only outcomes allowed: the model's input and a preview, or the library's own error.
    try:
        photo = load_rgb(data, size=224, name="fuzz")
    except ImageError:
        return
    assert photo.shape == (224, 224, 3) and photo.dtype == np.uint8
    preview = images.load_preview(data, "fuzz")
    assert preview.ndim == 3 and preview.shape[2] == 3 and max(preview.shape) <= 640
    info = inspect(data, "fuzz")
    assert info.width >= 1 and info.height >= 1
