"""What the store computes from a photo's pixels: its fingerprint, and metadata-free copies to show.

Anything that leaves the store for display or export is re-encoded from pixels only: no EXIF (GPS,
camera serial numbers, capture times), no XMP, no ICC profile, no comments. EXIF orientation is applied
first (inference.images.load_image does it), so the copy is upright without the tag.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from inference.images import Limits, LoadedImage, load_image
from inference.phash import THUMBNAIL_SIDE, dihedral_phashes

# As the data audit decodes (datatools.audit.DECODE_SIDE): JPEGs decode in draft mode to no less than this,
# so the store's fingerprints are the audit's and a JPEG and its PNG copy get the same thumbnail.
# TODO(lead): move DECODE_SIDE and this fingerprint() next to dihedral_phashes in inference/phash.py.
DECODE_SIDE = 128
_THUMBNAIL_QUALITY = 85
# Full-size copies feed exports and training data: high enough that re-encoding changes little.
_COPY_QUALITY = 95


@dataclass(frozen=True)
class Fingerprint:
    width: int  # upright, of the photo as received
    height: int
    format: str
    phashes: tuple[int, ...]  # the 8 dihedral 64-bit hashes; phashes[0] is the photo as it is
    thumbnail: bytes  # THUMBNAIL_SIDE^2 RGB pixels, confirms hash matches (inference.phash)


def fingerprint(data: bytes, limits: Limits, decoded: LoadedImage | None = None) -> Fingerprint:
    """Size and near-duplicate fingerprint. ImageError if it is not a photo.

    `decoded` is the same photo already decoded by the caller (at any size no smaller than DECODE_SIDE):
    the hash and thumbnail are area averages, so they barely depend on the decode size, and a 12 MP
    JPEG is not Huffman-decoded twice (about 15 ms each here)."""
    loaded = decoded or load_image(data, limits=_accepting(data, limits), draft_to=(DECODE_SIDE, DECODE_SIDE))
    side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    thumbnail = loaded.image.resize(side, Image.Resampling.BOX).tobytes()
    return Fingerprint(loaded.width, loaded.height, loaded.format, dihedral_phashes(loaded.image), thumbnail)


def thumbnail_jpeg(data: bytes, limits: Limits, max_side: int) -> bytes:
    """An upright JPEG no larger than max_side on either side, without any metadata."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    image = load_image(data, limits=_accepting(data, limits), draft_to=(max_side, max_side)).image
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return _encode(_pixels_only(image), "JPEG", _THUMBNAIL_QUALITY)


def clean_copy(data: bytes, limits: Limits) -> tuple[bytes, str]:
    """The full photo, upright, without metadata -> (bytes, file suffix). Lossless sources stay PNG."""
    loaded = load_image(data, limits=_accepting(data, limits))
    fmt = "JPEG" if loaded.format in ("JPEG", "HEIF") else "PNG"
    return _encode(_pixels_only(loaded.image), fmt, _COPY_QUALITY), ".jpg" if fmt == "JPEG" else ".png"


def _pixels_only(image: Image.Image) -> Image.Image:
    """A new image from the raw pixels: nothing of image.info (exif, icc_profile, xmp, comment) carries over."""
    return Image.frombytes(image.mode, image.size, image.tobytes())


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def _accepting(data: bytes, limits: Limits) -> Limits:
    """The pixel limit still guards against decompression bombs; any stored size was accepted once."""
    return Limits(max_bytes=max(len(data), limits.max_bytes), max_pixels=limits.max_pixels)
