"""Perceptual hashes and near-duplicate search: the same photo re-encoded, resized, rotated or mirrored.

Shared by the data audit (leaks between splits) and the evidence store (the same goods seen twice).
numpy + Pillow only.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from PIL import Image

# Near-duplicates are found in two steps, calibrated on synth photos (1,560 of them, 320x240 and 640x480).
# 1. Candidates: 64-bit DCT perceptual hashes within this many bits, for the closest of the 8 rotations
#    and mirror images. Re-encoded (quality 30-90), resized (to 1/3), PNG, rotated and mirrored copies
#    stay within 8 bits (5% crops 10), but two different photos of one product in a similar pose can be
#    just 4 bits apart: the hash sees only the coarse layout of a box on a background.
CANDIDATE_BITS = 12
# 2. Confirmed: the pair's 24x24 colour thumbnails, turned the way the hashes matched, correlate at least
#    this much. Those copies score >= 0.98, different photos of the same product <= 0.91. Below the bar:
#    a 1/3-size, quality-30 copy of a 320x240 photo (0.93) and 5% crops (0.82).
MIN_THUMBNAIL_CORRELATION = 0.94
THUMBNAIL_SIDE = 24
HASH_SIDE = 32  # the grayscale thumbnail the DCT hash is computed on
# 3. Same capture (the data audit only): two photos of one product taken alike, on a plain background, pass
#    steps 1-2 (thumbnails 0.98 for a box moved by 8 px of 640), yet are different photos - a genuine and a
#    counterfeit of one product are near-identical by nature. Fine detail tells them apart: the high-pass
#    of grayscale copies at 128x128 (or the smaller photo's size; sigma 1.5 px at 128) correlates >= 0.80
#    for re-encoded (q30), 1/3-size, rotated and mirrored copies of 640x480 photos and for a 3/4-size q60
#    copy of a 160x120 one, and <= 0.62 for the same box moved by 6-8 px of 640 (0.74-0.79 at 4-6 px
#    without turning, which count as the same capture). A crop is matched over zooms of 1-1.25 at every
#    position: 5-11% crops >= 0.83, a crop of one photo against another photo taken alike <= 0.76.
CAPTURE_SIDE = 128
CAPTURE_SIGMA = 1.5
MIN_CAPTURE_CORRELATION = 0.7
MIN_CROP_CORRELATION = 0.8  # a crop's zoom and position also fit part of a new pose: more is asked
MAX_CROP_ZOOM = 1.25
# Anticlockwise rotations (np.rot90 steps, like PIL's ROTATE_90) of the image, then of its mirror image
# (left-right): the order of dihedral_phashes().
DIHEDRAL_NAMES = ("as is", "rotated 90°", "rotated 180°", "rotated 270°",
                  "mirrored", "mirrored and rotated 90°", "mirrored and rotated 180°", "mirrored and rotated 270°")


@functools.lru_cache(maxsize=1)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: coefficients = M @ pixels @ M.T."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    matrix = np.sqrt(2 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2)
    return matrix.astype(np.float32)


def dihedral(pixels: np.ndarray, variant: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Variant 0..7 of DIHEDRAL_NAMES: rotations of the image (0-3) or of its mirror image (4-7)."""
    if variant >= 4:
        pixels = np.flip(pixels, axis=axes[1])
    return np.rot90(pixels, variant % 4, axes=axes)


def dihedral_phashes(image: Image.Image) -> tuple[int, ...]:
    """The 64-bit DCT perceptual hash of the image and of its 7 other rotations/mirror images.

    A 32x32 area-averaged grayscale thumbnail keeps the layout and forgets resolution and compression;
    the 8x8 lowest frequencies compared with their median give the bits (as pHash does)."""
    gray = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), np.float32)
    variants = np.stack([dihedral(gray, variant) for variant in range(8)])
    matrix = _dct_matrix(HASH_SIDE)
    low = (matrix @ variants @ matrix.T)[:, :8, :8].reshape(8, 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return tuple(int(v) for v in np.packbits(bits, axis=1).view(">u8").ravel())


@functools.lru_cache(maxsize=1)
def _byte_popcounts() -> np.ndarray:
    return np.array([bin(i).count("1") for i in range(256)], np.uint8)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy >= 2 has it built in; a byte table otherwise)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _byte_popcounts()[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1, dtype=np.uint8)


def near_duplicate_pairs(phashes: np.ndarray, thumbnails: np.ndarray, *, max_bits: int = CANDIDATE_BITS,
                         min_correlation: float = MIN_THUMBNAIL_CORRELATION,
                         block: int = 256) -> list[tuple[int, int, int, int]]:
    """(i, j, bits, variant) for each i < j where variant `variant` of i is a near-duplicate of j.

    phashes is (n, 8) uint64, each file's 8 dihedral hashes; thumbnails (n, side, side, 3) uint8.
    Comparing every variant of i with j as stored finds j even when it is a rotated or mirrored copy.
    Row blocks keep memory small; only candidates within max_bits get the thumbnail comparison."""
    n, pairs = len(phashes), []
    stored = phashes[:, 0]
    for start in range(0, n, block):
        rows = phashes[start:start + block]
        distance = np.full((len(rows), n - start), 255, np.uint8)
        for variant in range(phashes.shape[1]):
            np.minimum(distance, popcount(rows[:, variant, None] ^ stored[None, start:]), out=distance)
        upper = np.arange(n - start)[None, :] > np.arange(len(rows))[:, None]  # each pair once, i < j
        first, second = np.nonzero((distance <= max_bits) & upper)
        for chunk in range(0, len(first), 4096):  # bounded memory when many photos look alike
            pick = slice(chunk, chunk + 4096)
            pairs += _confirmed(phashes, thumbnails, first[pick] + start, second[pick] + start, min_correlation)
    return pairs


def _unit_thumbnails(thumbnails: np.ndarray) -> np.ndarray:
    """Thumbnails minus their mean, scaled to unit length: a dot product is then their correlation."""
    centred = thumbnails.astype(np.float32) - thumbnails.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float32)
    norms = np.sqrt((centred ** 2).sum(axis=(1, 2, 3), keepdims=True))
    return centred / np.maximum(norms, 1e-6)  # a flat thumbnail correlates with nothing


def _confirmed(phashes, thumbnails, first, second, min_correlation) -> list[tuple[int, int, int, int]]:
    """The candidate pairs whose thumbnails, turned the way the hashes matched, correlate enough."""
    bits = popcount(phashes[first] ^ phashes[second, :1])  # (k, 8): each variant of first vs second
    variants = bits.argmin(axis=1)
    keep = np.zeros(len(first), bool)
    for variant in np.unique(variants):
        chosen = variants == variant
        turned = dihedral(_unit_thumbnails(thumbnails[first[chosen]]), int(variant), axes=(1, 2))
        keep[chosen] = (turned * _unit_thumbnails(thumbnails[second[chosen]])).sum(axis=(1, 2, 3)) >= min_correlation
    return [(int(i), int(j), int(bits[k].min()), int(variants[k])) for k, i, j in
            zip(np.flatnonzero(keep), first[keep], second[keep])]


def capture_detail(image: Image.Image, variant: int = 0, side: int = CAPTURE_SIDE) -> np.ndarray:
    """(side, side) float32 grayscale of the image, turned by dihedral variant `variant`."""
    gray = np.asarray(image.convert("L").resize((side, side), Image.Resampling.BOX), np.float32)
    return np.ascontiguousarray(dihedral(gray, variant))


def _high_pass(gray: np.ndarray, sigma: float) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), sigma)


def capture_correlation(first: np.ndarray, second: np.ndarray, cropped: bool = False) -> float:
    """How well the fine detail of two equally sized capture_detail() copies matches: as they are, or
    (cropped) when one is a crop of the other, zoomed 1-1.25 at any position. 1 for the same pixels."""
    side = len(first)
    sigma = CAPTURE_SIGMA * side / CAPTURE_SIDE
    sizes = range(side + 1, round(MAX_CROP_ZOOM * side) + 1) if cropped else [side]  # a pixel of zoom a step
    best = -1.0
    for whole, part in ((first, second), (second, first)) if cropped else ((first, second),):
        detail = _high_pass(part, sigma)
        for size in sizes:
            zoomed = whole if size == side else cv2.resize(whole, (size, size), interpolation=cv2.INTER_LINEAR)
            best = max(best, float(cv2.matchTemplate(_high_pass(zoomed, sigma), detail, cv2.TM_CCOEFF_NORMED).max()))
    return best


def same_capture(first: Image.Image, second: Image.Image, variant: int) -> bool:
    """Whether `second` is a copy of `first` turned by `variant` (re-encoded, resized, cropped), not another
    photo of the same thing taken alike. Compared at the smaller photo's resolution (at most CAPTURE_SIDE):
    upsampling a small copy would blur away the detail that identifies a capture."""
    side = min(CAPTURE_SIDE, *first.size, *second.size)
    first, second = capture_detail(first, variant, side), capture_detail(second, 0, side)
    return (capture_correlation(first, second) >= MIN_CAPTURE_CORRELATION
            or capture_correlation(first, second, cropped=True) >= MIN_CROP_CORRELATION)
