"""Untrusted image bytes -> an upright RGB Pillow image, or an ImageError saying what is wrong.

The same function decodes uploads in the server and files in training, so a photo becomes the same
pixels on both sides.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Formats we decode. Anything else (TIFF, PSD, EPS, PDF, ...) is refused before a decoder runs,
# whatever the file is called: every extra decoder is extra attack surface.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")

# EXIF orientations 5..8 rotate by 90 degrees, so width and height trade places.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """Bad image input. `status` is the HTTP status an API answers with, `code` a stable slug."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 25_000_000  # 25 MB: a 12 MP phone JPEG is 3-8 MB
    max_pixels: int = 80_000_000  # width*height from the header, checked before any pixel is decoded


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, upright, possibly decoded at reduced size (JPEG draft)
    width: int  # of the original photo, upright
    height: int
    format: str


def load_image(data: bytes, *, limits: Limits = Limits(), draft_to: tuple[int, int] | None = None) -> LoadedImage:
    """Decode `data`; `draft_to=(w, h)` lets JPEGs decode at a reduced scale no smaller than that."""
    _check_size(data, limits)
    image = _open(data)
    width, height = _upright_size(image)
    if width * height > limits.max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"The image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}. "
            "Send a smaller photo.",
            status=413,
        )
    if draft_to is not None and image.format == "JPEG":
        image.draft("RGB", draft_to)  # DCT scaling: decodes 1/2, 1/4 or 1/8 size, much faster
    image_format = image.format or ""
    _decode(image)
    ImageOps.exif_transpose(image, in_place=True)
    return LoadedImage(image=to_rgb(image), width=width, height=height, format=image_format)


def _check_size(data: bytes, limits: Limits) -> None:
    if not data:
        raise ImageError("empty_image", "The image is empty (0 bytes): send the photo's file contents.")
    if len(data) > limits.max_bytes:
        raise ImageError(
            "image_too_large",
            f"The image is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes. Send a smaller photo.",
            status=413,
        )


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, about huge images; our own pixel limit answers first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"The image has too many pixels: {exc}", status=413) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if sniff_format(data):  # right signature, unreadable header: a damaged file, not a wrong format
            raise ImageError(
                "corrupt_image", f"The {sniff_format(data)} image is truncated or corrupt. Send the complete file."
            ) from exc
        raise ImageError(
            "unsupported_format",
            f"This is not a supported image: only {', '.join(ALLOWED_FORMATS)} files are accepted.",
            status=415,
        ) from exc


def sniff_format(data: bytes) -> str | None:
    """The allowed format a file's signature claims, from its first bytes; None if none matches."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a corrupt EXIF block is not worth refusing the photo for
        orientation = None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _decode(image: Image.Image) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(
            "corrupt_image",
            f"The {image.format} image could not be decoded (truncated or corrupt: {exc}). Send the complete file.",
        ) from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency is flattened onto white, as the photo would be printed."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: Pillow's convert("L") clips instead of scaling, so scale by hand.
        scale = 1 / 256 if image.mode.startswith("I;16") else 1 / 65536
        image = image.point(lambda v: v * scale).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
