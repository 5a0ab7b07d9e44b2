"""Load any image file safely into an RGB array: the one image loader of the project.

Memory is bounded per photo and per process: a file is refused if decoding it would hold more
than MAX_DECODE_BYTES of pixels (JPEGs are decoded at a reduced scale first, so a 200-megapixel
phone photo is fine), a large image is shrunk in its own mode before it is converted, and at
most DECODE_SLOTS decodes run at once, however many visitors upload.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flower_model.core.errors import ImageError

# The suffixes a dataset scan and the upload widget accept.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
# The formats decoded, whatever a file's name says: those whose memory use was measured.
# (Pillow's JPEG opener also gives MPO, the JPEG of phones that store several images.)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
# Larger files are refused before Pillow sees them.
MAX_FILE_BYTES = 50 * 1024 * 1024
# The longest side of a photo shown on a page (decoded at reduced scale when it is larger).
PREVIEW_SIDE = 640
# The most pixel memory one decode may hold: with the small copies made after shrinking, a
# photo then costs at most ~150 MB (measured by bench/images.py: a 9400×9400 1-bit PNG, a
# 100-megapixel JPEG). 128 MB is 32 megapixels of RGB(A) or 128 of grey, 1-bit or palette.
MAX_DECODE_BYTES = 128 * 2**20
# What a header may declare at all; anything larger is refused before decoding. This check,
# with the byte budget after a JPEG's reduced-scale decode, replaces Pillow's own bomb guard,
# whose warning would only alarm users and whose limit refuses ordinary 100-megapixel photos.
MAX_DECLARED_PIXELS = 1_000_000_000
# How many decodes run at once in this process (a server's visitors share them).
DECODE_SLOTS = max(2, os.cpu_count() or 2)
# Images of more pixels than this are shrunk in their own mode before they are converted to
# RGB, so that the conversion's copies stay small. A dataset photo or a phone JPEG (already
# decoded at a reduced scale) never is, so its pixels do not depend on this step.
PRESHRINK_PIXELS = 4_000_000

Image.MAX_IMAGE_PIXELS = None  # see MAX_DECLARED_PIXELS
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)

ImageSource = Path | bytes

# Bytes per pixel of Pillow's in-memory storage (RGB is stored in four bytes).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Decoders that hold more than the image while they work: WebP's, about 15.5 bytes a pixel
# (measured: 185 MB for a 12-megapixel WebP, lossy or lossless).
_DECODER_BYTES_PER_PIXEL = {"WEBP": 16}
PROGRESSIVE_BYTES_PER_PIXEL = 6


@dataclass(frozen=True)
class ImageInfo:
    """What a full decode of one image file found."""

    width: int
    height: int
    format: str | None = None  # Pillow's name of the file format: "JPEG", "PNG", ...


def read_bytes(path: Path) -> bytes:
    """Return a file's bytes, refusing empty, missing and oversized files."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageError(f"{path.name}: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"{path.name}: the file is {size / 2**20:.0f} MB, over the "
            f"{MAX_FILE_BYTES // 2**20} MB limit"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from exc


def _bomb(name: str, width: int, height: int) -> ImageError:
    return ImageError(
        f"{name}: {width}×{height} is {width * height / 1e6:,.0f} megapixels, too many to decode "
        "safely (refused as a possible decompression bomb)"
    )


def _open(data: bytes, name: str) -> Image.Image:
    """Open image bytes lazily, refusing what a header says is too large to decode."""
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: the file is over the {MAX_FILE_BYTES // 2**20} MB limit")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        kinds = "JPEG, PNG, GIF, WebP or BMP"
        raise ImageError(f"{name}: not an image this app reads ({kinds})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels (refused as a decompression bomb)") from exc
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError) as exc:
        raise ImageError(f"{name}: cannot open the image ({exc})") from exc
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name}: the image has no pixels ({image.width}×{image.height})")
    if image.width * image.height > MAX_DECLARED_PIXELS:
        raise _bomb(name, image.width, image.height)
    return image


def _reduce_for_memory(
    image: Image.Image, name: str, request: tuple[int, int] | None, mode: str = "RGB"
) -> None:
    """Make a JPEG decode at the smallest scale that still gives `request` (or, with none, at
    a scale that fits the budget), then refuse the image if decoding it would hold more than
    MAX_DECODE_BYTES."""
    declared = image.size
    if _is_jpeg(image):
        if request is None and _pixel_bytes(image, declared) > MAX_DECODE_BYTES:
            scale = int(np.ceil(np.sqrt(_pixel_bytes(image, declared) / MAX_DECODE_BYTES)))
            request = (max(1, image.width // scale), max(1, image.height // scale))
        if request is not None:
            image.draft(mode, request)
    needed = _pixel_bytes(image, declared)
    if needed > MAX_DECODE_BYTES:
        kind = "progressive JPEG" if image.info.get("progressive") else image.mode
        raise ImageError(
            f"{name}: {declared[0]}×{declared[1]} pixels ({kind}) would need "
            f"{needed / 2**20:,.0f} MB to decode, over the {MAX_DECODE_BYTES // 2**20} MB limit "
            "for one photo: save it smaller, or as a baseline JPEG"
        )


def _is_jpeg(image: Image.Image) -> bool:
    return image.format in ("JPEG", "MPO")


def _pixel_bytes(image: Image.Image, declared: tuple[int, int]) -> int:
    """Return the memory that decoding the image (of `declared` size before any reduced-scale
    decode) holds at its peak."""
    if _is_jpeg(image) and image.info.get("progressive"):
        # libjpeg keeps every coefficient of a progressive file at full size, however small
        # the scale it decodes at: about 6 bytes a pixel (measured: 210 MB for 36 megapixels).
        return declared[0] * declared[1] * PROGRESSIVE_BYTES_PER_PIXEL
    per_pixel = _DECODER_BYTES_PER_PIXEL.get(image.format or "", 0) or _BYTES_PER_PIXEL.get(
        image.mode, 4
    )
    return image.width * image.height * per_pixel


def _preshrink(image: Image.Image, target: int) -> Image.Image:
    """Return a large image shrunk in its own mode to no less than 2×target on its shorter
    side, so that converting it to RGB costs little memory."""
    if image.width * image.height <= PRESHRINK_PIXELS:
        return image
    factor = min(image.width, image.height) // (2 * target)
    if factor < 2:
        return image
    size = (image.width // factor, image.height // factor)
    if image.mode in ("1", "P", "RGBA", "LA", "PA") or image.mode.startswith("I;16"):
        # Pillow's reduce() refuses the first modes, and makes a full-size premultiplied copy
        # of those with alpha: nearest-neighbour takes every factor-th pixel, with no copy.
        return image.resize(size, Image.Resampling.NEAREST)
    return image.reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha on white, 16-bit scaled, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image)
        scale = 257 if values.max(initial=0) > 255 else 1
        gray = np.clip(values // scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image), nan=0.0, posinf=255.0, neginf=0.0)
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _decode_error(name: str, exc: Exception) -> ImageError:
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(f"{name}: too many pixels (refused as a decompression bomb)")
    reason = "the file is truncated" if "truncated" in str(exc) else f"cannot decode ({exc})"
    return ImageError(f"{name}: {reason}")


# What a damaged file can make Pillow's decoders raise; anything of these becomes an ImageError.
_DECODE_FAILURES = (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError)


def decode(
    data: bytes, name: str, size: int | None = None, max_side: int | None = None
) -> Image.Image:
    """Return the first frame of image bytes as an upright RGB image, resized to size×size
    (the model's input), or shrunk to at most max_side on its longer side (a preview)."""
    with _decode_slots:
        image = _open(data, name)
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            target = size or max_side
            _reduce_for_memory(image, name, (target, target) if target else None)
            image.load()
            if target is not None:
                image = _preshrink(image, target)
            image = _to_rgb(ImageOps.exif_transpose(image))
            if size is not None:
                image = model_sized(image, size)
            elif max_side is not None and max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            image.load()
        except ImageError:
            raise
        except (*_DECODE_FAILURES, Image.DecompressionBombError) as exc:
            raise _decode_error(name, exc) from exc
        return image


def model_sized(image: Image.Image, size: int) -> Image.Image:
    """Return an upright RGB image at the model's input size, size×size: the last step of
    every photo's way to the model (a decoded file's, or a camera frame's)."""
    if image.size != (size, size):
        return image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def load_rgb(source: ImageSource, size: int | None = None, name: str | None = None) -> np.ndarray:
    """Return an image as a uint8 array of shape (H, W, 3), or (size, size, 3) when size is set."""
    if isinstance(source, bytes):
        data, label = source, name or "image"
    else:
        data, label = read_bytes(Path(source)), name or Path(source).name
    return np.asarray(decode(data, label, size), dtype=np.uint8)


def load_preview(data: bytes, name: str, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """Return image bytes as a uint8 RGB array for showing, at most max_side on its longer side."""
    return np.asarray(decode(data, name, max_side=max_side), dtype=np.uint8)


def inspect(data: bytes, name: str) -> ImageInfo:
    """Return the size of image bytes after a full (reduced-scale) decode that finds corruption."""
    with _decode_slots:
        image = _open(data, name)
        width, height = image.width, image.height
        try:
            # A JPEG's every byte is still read at 1/8 scale, so truncation is still found,
            # 8× faster.
            eighth = (max(1, width // 8), max(1, height // 8))
            _reduce_for_memory(image, name, eighth, mode=image.mode)
            image.load()
        except ImageError:
            raise
        except (*_DECODE_FAILURES, Image.DecompressionBombError) as exc:
            raise _decode_error(name, exc) from exc
        return ImageInfo(width=width, height=height, format=image.format)
