"""Load any image file safely into an RGB array: the one image loader of the project."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flower_model.errors import ImageError

# The suffixes a dataset scan and the upload widget accept.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
# Larger files are refused before Pillow sees them.
MAX_FILE_BYTES = 50 * 1024 * 1024
# The longest side of a photo shown on a page (decoded at reduced scale when it is larger).
PREVIEW_SIDE = 640

ImageSource = Path | bytes


@dataclass(frozen=True)
class ImageInfo:
    """What a full decode of one image file found."""

    width: int
    height: int


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
    return path.read_bytes()


def _open(data: bytes, name: str) -> Image.Image:
    """Open image bytes lazily, with the decompression-bomb guard enforced as an error."""
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: the file is over the {MAX_FILE_BYTES // 2**20} MB limit")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels, refused as a decompression bomb") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: cannot open the image ({exc})") from exc
    max_pixels = Image.MAX_IMAGE_PIXELS
    if max_pixels and image.width * image.height > max_pixels:
        raise ImageError(
            f"{name}: {image.width}×{image.height} pixels is too many, "
            "refused as a decompression bomb"
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha on white, 16-bit scaled, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        gray = np.clip(values / scale, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode(
    data: bytes, name: str, size: int | None = None, max_side: int | None = None
) -> Image.Image:
    """Return the first frame of image bytes as an upright RGB image, resized to size×size
    (the model's input), or shrunk to at most max_side on its longer side (a preview)."""
    image = _open(data, name)
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        target = size or max_side
        if target is not None and image.format == "JPEG":
            # Let libjpeg decode at a reduced scale that is still at least `target`.
            image.draft("RGB", (target, target))
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        elif max_side is not None and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels, refused as a decompression bomb") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = "the file is truncated" if "truncated" in str(exc) else f"cannot decode ({exc})"
        raise ImageError(f"{name}: {reason}") from exc
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
    image = _open(data, name)
    width, height = image.width, image.height
    try:
        if image.format == "JPEG":
            # Every byte is still read at 1/8 scale, so truncation is still found, 8× faster.
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels, refused as a decompression bomb") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = "the file is truncated" if "truncated" in str(exc) else f"cannot decode ({exc})"
        raise ImageError(f"{name}: {reason}") from exc
    return ImageInfo(width=width, height=height)
