"""Untrusted image bytes -> an upright RGB Pillow image, or an ImageError saying what is wrong.

The same function decodes uploads in the server and files in training, so a photo becomes the same
pixels on both sides.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats we decode. Anything else (TIFF, PSD, EPS, PDF, ...) is refused before a decoder runs,
# whatever the file is called: every extra decoder is extra attack surface. HEIF (iPhone HEIC photos)
# is decoded by the pillow-heif plugin, registered on first use (see heif_available).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")

# Pillow opens multi-picture JPEGs (most phone photos: the photo plus depth maps or previews) as "MPO".
# They are JPEG files with extra frames appended; frame 0 is the photo, decoded like any JPEG.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# ISO BMFF major brands of HEIF files with HEVC-coded (or, for mif1/msf1, any) images, as pillow-heif
# accepts them. AVIF ("avif", "avis") is not among them: it is refused.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})

# EXIF orientations 5..8 rotate by 90 degrees, so width and height trade places.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
# What ImageOps.exif_transpose does for each orientation, applied here to an image reduced from the photo.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}

# Memory, in bytes per pixel, as Pillow stores a decoded image: one for 1-bit (a byte per pixel), gray and
# palette images, two for 16-bit gray, four for everything else (RGB is padded to four).
_RGB_BYTES = 4
# Copies of the decoded frame a decoder holds at its peak besides the image itself, measured (VmHWM of a
# 4000x4000 decode, Pillow 13.0, pillow-heif 1.8): PNG and JPEG decode straight into the image (4.1 B/px
# for RGB); libheif decodes into a buffer that is then copied (8.1 B/px); libwebp decodes to RGBA that is
# copied and converted on its way into Pillow (16.9 B/px).
_DECODER_COPIES = {"HEIF": 2, "WEBP": 4}
# While an image is reduced, this many bytes of it at most are converted to RGB at a time (a strip of
# whole rows), so a full-size RGB copy never exists: a 1-bit 8,900^2 PNG decodes to 79 MB, as RGB 317 MB.
_STRIP_BYTES = 8 * 1024 * 1024
# to_rgb makes up to four copies (a transparent image: RGBA, white background, composite, RGB), and
# exif_transpose one more.
_CONVERSION_COPIES = 5
# Decoder state, zlib windows and allocator slack, as a share of the decoded frame (measured: 6%, 8 MB over
# the 137 MB of a 36 Mpx RGBA PNG).
_DECODER_OVERHEAD = 1 / 16


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
    image: Image.Image  # RGB, upright, possibly decoded at reduced size (draft_to)
    width: int  # of the original photo, upright
    height: int
    format: str
    jpeg_quality: int | None = None  # JPEGs: the quality the file was last saved at (jpeg_quality())


def load_image(data: bytes, *, limits: Limits = Limits(), draft_to: tuple[int, int] | None = None) -> LoadedImage:
    """Decode `data`; with `draft_to=(w, h)` the image comes out no larger than it needs to be to stay no
    smaller than that on both sides: JPEGs decode at 1/2, 1/4 or 1/8 scale (DCT scaling), and any image
    still twice that size or more is reduced by a whole factor (box average) as it becomes RGB, so that a
    huge PNG, WebP or HEIF costs its decoded frame plus a few MB, not a full-size RGB copy on top.
    `width` and `height` are always the original's.

    Multi-frame files (MPO, animated PNG/WebP, HEIF sequences) give their first (primary) frame."""
    image, image_format, (width, height) = _opened(data, limits, draft_to)
    quality = jpeg_quality(image) if image_format == "JPEG" else None
    _decode(image)
    factor = reduction_factor(image.size, draft_to)
    if factor == 1:
        # Only EXIF orientation is applied here: HEIF rotations (irot/imir boxes) were applied by libheif while
        # decoding, and pillow-heif then resets the EXIF orientation to 1, so no photo is turned twice.
        ImageOps.exif_transpose(image, in_place=True)
        return LoadedImage(image=to_rgb(image), width=width, height=height, format=image_format, jpeg_quality=quality)
    reduced = _reduced_rgb(image, factor)
    method = _UPRIGHT.get(_orientation(image))
    upright = reduced if method is None else reduced.transpose(method)
    return LoadedImage(image=upright, width=width, height=height, format=image_format, jpeg_quality=quality)


# The IJG (libjpeg) luminance quantisation table at quality 50, ITU T.81 Annex K: what every JPEG encoder's
# "quality" setting scales.
_IJG_LUMINANCE = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
                           69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64,
                           81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
                          dtype=np.float64)


def jpeg_quality(image: Image.Image) -> int | None:
    """The IJG quality (1..100) whose luminance table is nearest the file's, or None when it has none. Phone
    cameras write 75-98 (the real photos beside the project: 75-80); a copy re-saved at 30 reads 30."""
    tables = getattr(image, "quantization", None) or {}
    if 0 not in tables or len(tables[0]) != 64:
        return None
    # Compared sorted: Pillow's table order (zigzag or natural) does not matter then.
    found = np.sort(np.asarray(tables[0], dtype=np.float64))
    return int(np.abs(_ijg_tables() - found).sum(1).argmin()) + 1


@functools.cache
def _ijg_tables() -> np.ndarray:
    """(100, 64): the sorted IJG luminance table at each quality 1..100, computed once (on an upload's path)."""
    quality = np.arange(1, 101, dtype=np.float64)[:, None]
    scale = np.where(quality < 50, 5000 / quality, 200 - 2 * quality)
    return np.sort(np.clip(np.floor((_IJG_LUMINANCE * scale + 50) / 100), 1, 255), axis=1)


def decode_cost(data: bytes, *, limits: Limits = Limits(), draft_to: tuple[int, int] | None = None) -> int:
    """Bytes of memory load_image(data, limits=limits, draft_to=draft_to) needs at its peak, estimated
    from the header alone (no pixel is decoded). Raises the ImageError load_image would raise before
    decoding (empty, too large, unsupported, too many pixels, unreadable header)."""
    image, image_format, _ = _opened(data, limits, draft_to)
    width, height = image.size
    factor = reduction_factor(image.size, draft_to)
    decoded = width * height * _bytes_per_pixel(image.mode) * _DECODER_COPIES.get(image_format, 1)
    decoded += int(decoded * _DECODER_OVERHEAD)
    if factor == 1:
        return decoded + width * height * _RGB_BYTES * _CONVERSION_COPIES
    reduced = -(-width // factor) * -(-height // factor) * _RGB_BYTES
    strip = _strip_rows(width, factor) * width * _RGB_BYTES
    return decoded + strip * _CONVERSION_COPIES + 2 * reduced  # + the upright copy of the reduced image


def reduction_factor(size: tuple[int, int], target: tuple[int, int] | None) -> int:
    """The largest whole factor `size` can be divided by and stay no smaller than `target` on both
    sides; 1 (no reduction) without a target."""
    if target is None:
        return 1
    return max(1, min(size[0] // max(1, target[0]), size[1] // max(1, target[1])))


def _opened(data: bytes, limits: Limits, draft_to: tuple[int, int] | None) -> tuple[Image.Image, str, tuple[int, int]]:
    """The checked, opened (not decoded) image, its format and its upright size; JPEGs set to draft_to."""
    _check_size(data, limits)
    image = _open(data)
    image_format = "JPEG" if image.format in _JPEG_FORMATS else image.format or ""
    width, height = _upright_size(image)
    _check_pixels(width, height, limits)
    if draft_to is not None and image_format == "JPEG":
        # DCT scaling: decodes at 1/2, 1/4 or 1/8 size (the smallest no smaller than draft_to), much faster.
        image.draft("RGB", draft_to)
    return image, image_format, (width, height)


def _bytes_per_pixel(mode: str) -> int:
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else _RGB_BYTES


def _strip_rows(width: int, factor: int) -> int:
    """Rows converted at a time: a whole number of reduction boxes, about _STRIP_BYTES as RGB."""
    return max(1, _STRIP_BYTES // (_RGB_BYTES * width * factor)) * factor


def _reduced_rgb(image: Image.Image, factor: int) -> Image.Image:
    """to_rgb(image).reduce(factor), pixel for pixel, converting a strip of rows at a time: the strips
    hold whole boxes, so no box straddles two of them."""
    width, height = image.size
    rows = _strip_rows(width, factor)
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = to_rgb(image.crop((0, top, width, min(height, top + rows))))  # crop keeps palette/transparency
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def _check_pixels(width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"The image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}. "
            "Send a smaller photo.",
            status=413,
        )


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
    claimed = sniff_format(data)
    formats = decodable_formats()
    if claimed and claimed not in formats:
        raise ImageError(
            "unsupported_format",
            f"This server cannot decode {claimed} photos (the pillow-heif package is not installed): "
            f"send a {', '.join(formats)} file.",
            status=415,
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, about huge images; our own pixel limit answers first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"The image has too many pixels: {exc}", status=413) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if claimed:  # right signature, unreadable header: a damaged file, not a wrong format
            raise ImageError(
                "corrupt_image", f"The {claimed} image is truncated or corrupt. Send the complete file."
            ) from exc
        raise ImageError(
            "unsupported_format",
            f"This is not a supported image: only {', '.join(formats)} files are accepted.",
            status=415,
        ) from exc


def decodable_formats() -> tuple[str, ...]:
    """ALLOWED_FORMATS that this installation can decode; pass it as Image.open(formats=...).

    Pillow raises KeyError for a format in `formats` that has no registered opener, so HEIF is only
    listed once pillow-heif is registered."""
    return ALLOWED_FORMATS if heif_available() else tuple(f for f in ALLOWED_FORMATS if f != "HEIF")


@functools.cache
def heif_available() -> bool:
    """Register pillow-heif's HEIF opener with Pillow, once, on first use; False if it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    # Decode the primary image only. With thumbnails on, pillow-heif's draft() may hand back an embedded
    # thumbnail instead of the photo; depth maps and auxiliary images (portrait mode) are never used.
    # These are process-wide pillow-heif options.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return True


def sniff_format(data: bytes) -> str | None:
    """The allowed format a file's signature claims, from its first bytes; None if none matches."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:  # ISO BMFF: box size, "ftyp", major brand
        return "HEIF"
    return None


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a corrupt EXIF block is not worth refusing the photo for
        return None


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if _orientation(image) in _SWAPPING_ORIENTATIONS else (width, height)


def _decode(image: Image.Image) -> None:
    try:
        image.load()  # a damaged HEVC stream in a HEIF file raises ValueError here
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
