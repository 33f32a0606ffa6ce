"""Print-plausible counterfeit edits of real package photos (torch-free: numpy, Pillow, OpenCV).

A real photo of a genuine package becomes a counterfeit photo by one change a counterfeiter's print
would make: an ink changed in hue or lightness, a reprinted look, a substituted font, a reshaped logo,
a misspelling, or a shifted element. Every change is confined to a mask of the package's print (see
``package_region``), blended softly at its edge: no pixel outside the mask changes. The mask is meant to
leave out the background and the holding hand; where the artwork cannot be registered, its GrabCut
fallback sometimes takes in part of the shelf.

Magnitudes are given in the units of the photo (pixels of the source, about 348 px across), of the
package (fractions of its size: the square root of its area in pixels) or of colour (degrees of hue,
fractions of full scale of HSV saturation and value). Each edit is deterministic given its
``numpy.random.Generator`` (and GrabCut is seeded, so package_region is deterministic too).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from PIL import Image

from inference.align import Reference, keypoints, match

KINDS: tuple[str, ...] = ("hue", "lightness", "reprint", "font", "logo", "misspelling", "shift")

ARTWORK_WHITE = 235  # an artwork pixel with all channels at or above this is the web shop's white page
MIN_ARTWORK_AREA = 0.03  # a registered print covering less than this share of the photo is a false match
MAX_ARTWORK_AREA = 0.85  # ... and more than this share, a degenerate homography
ARTWORK_UPSAMPLE = 2.0
# Fewer than inference.align's MIN_INLIERS are accepted: a wrong registration is caught afterwards, when the
# warped artwork disagrees with most of the photo (see _disagreement).
ARTWORK_MIN_INLIERS = 10
HULL_GROWTH = 2.2  # the agreeing keypoints' hull, grown about its centre, bounds the registered face
EDGE_ERODE = 3  # pixels: edits stay this far inside the package outline
EDGE_SOFTNESS = 1.2  # pixels: Gaussian sigma of the blend at the package outline and at an edit's window
MIN_CHANGE = 1.0  # mean absolute change (0..255, per pixel of the edited window) below which an edit found no target


# --------------------------------------------------------------------------- where the package is


def _artwork_mask(artwork: np.ndarray) -> np.ndarray:
    """The artwork's printed (non-white) area, holes filled: uint8 0/255."""
    printed = (artwork.min(axis=2) < ARTWORK_WHITE).astype(np.uint8) * 255
    printed = cv2.morphologyEx(printed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return _largest_component(_fill_holes(printed))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=np.uint8)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == biggest).astype(np.uint8) * 255


def _plausible_homography(homography: np.ndarray, artwork_shape: tuple[int, int], photo_shape: tuple[int, int]) -> bool:
    """The artwork's outline must land as a convex, not mirrored, reasonably sized quadrilateral."""
    h, w = artwork_shape
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    try:
        quad = cv2.perspectiveTransform(corners, homography).reshape(-1, 2)
    except cv2.error:
        return False
    if not np.all(np.isfinite(quad)) or not cv2.isContourConvex(quad.astype(np.float32).reshape(-1, 1, 2)):
        return False
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if np.any(cross <= 0):  # mirrored or folded (image y points down: a clockwise outline has positive cross)
        return False
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    if lengths.min() < 0.25 * lengths.max() * (min(h, w) / max(h, w)):  # squashed to a sliver: too oblique
        return False
    return True


def _register_artwork(photo: np.ndarray, artwork: np.ndarray) -> np.ndarray | None:
    """The registered face of the artwork's print warped onto the photo, or None when registration fails."""
    # The web shop's artwork is small (~198 px, the carton ~60 px wide): upsampled 2x it gives SIFT about
    # twice as many matches (77% of photos reach MIN_INLIERS, against 55% at its own size).
    artwork = cv2.resize(artwork, None, fx=ARTWORK_UPSAMPLE, fy=ARTWORK_UPSAMPLE, interpolation=cv2.INTER_CUBIC)
    art_points, art_descriptors = keypoints(Image.fromarray(artwork))
    points, descriptors = keypoints(Image.fromarray(photo))
    homography, agreeing = match(Reference("artwork", art_points, art_descriptors), points, descriptors)
    if homography is None or len(agreeing) < ARTWORK_MIN_INLIERS:
        return None
    if not _plausible_homography(homography, artwork.shape[:2], photo.shape[:2]):
        return None
    # The artwork is a packshot (front, a side, the cap): only the face the matches lie on follows the
    # homography, so the printed area is cut to the hull of the agreeing keypoints, grown HULL_GROWTH times.
    hull = cv2.convexHull(art_points[agreeing].astype(np.float32)).reshape(-1, 2)
    centre = hull.mean(axis=0)
    grown = np.zeros(artwork.shape[:2], np.uint8)
    cv2.fillConvexPoly(grown, np.round(centre + HULL_GROWTH * (hull - centre)).astype(np.int32), 255)
    printed = np.where(grown > 0, _artwork_mask(artwork), 0).astype(np.uint8)
    height, width = photo.shape[:2]
    warped = cv2.warpPerspective(printed, homography, (width, height), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    area = np.count_nonzero(warped) / warped.size
    if not MIN_ARTWORK_AREA <= area <= MAX_ARTWORK_AREA:
        return None
    art = cv2.warpPerspective(artwork, homography, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    hidden = _disagreement(photo, art, warped)
    if _skin_share(artwork) < SKIN_SHARE_MAX:
        hidden = cv2.bitwise_or(hidden, _skin(photo, warped))
    kept = _largest_component(np.where(hidden > 0, 0, warped).astype(np.uint8))
    if np.count_nonzero(kept) < 0.4 * np.count_nonzero(warped):
        return None  # mostly hidden, or the photo's light is too unlike the artwork's to judge
    return kept


DISAGREE_DELTA_E = 30.0  # CIE Lab distance (after a fitted light change) at which photo and artwork differ
DISAGREE_MIN_AREA = 0.01  # share of the registered print: smaller disagreeing spots are print detail


def _disagreement(photo: np.ndarray, art: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Where the registered print is hidden (a hand, glare) or is not the face the artwork shows (the side
    of a carton): large blobs where photo and warped artwork differ after a fitted change of light."""
    sigma = 2.5  # pixels: blurs away small misregistration and JPEG detail before comparing
    lab_photo = cv2.cvtColor(cv2.GaussianBlur(photo, (0, 0), sigma).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    lab_art = cv2.cvtColor(cv2.GaussianBlur(art, (0, 0), sigma).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    inside = mask > 0
    p, a = lab_photo[inside], lab_art[inside]
    use = np.ones(len(p), bool)
    fitted = a.copy()
    for _ in range(3):  # per channel photo = gain * artwork + offset, refitted on the best-agreeing 70%
        for c in range(3):
            design = np.stack([a[use, c], np.ones(use.sum(), np.float32)], 1)
            coef = np.linalg.lstsq(design, p[use, c], rcond=None)[0]
            fitted[:, c] = a[:, c] * coef[0] + coef[1]
        residual = np.linalg.norm(p - fitted, axis=1)
        use = residual <= np.quantile(residual, 0.7)
    far = np.zeros(mask.shape, np.uint8)
    far[inside] = (residual > DISAGREE_DELTA_E).astype(np.uint8) * 255
    far = cv2.morphologyEx(far, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(far, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= DISAGREE_MIN_AREA * inside.sum()
    blobs = keep[labels].astype(np.uint8) * 255
    return cv2.dilate(blobs, np.ones((5, 5), np.uint8))


def _palette_likeness(photo: np.ndarray, artwork: np.ndarray | None) -> np.ndarray:
    """0..1 per pixel: how much more common its colour is in the artwork's print than in the photo as a
    whole (ratio histogram back-projection over coarse CIE Lab bins, smoothed): the shelf and the hand
    score low unless they share the print's inks. All ones without an artwork."""
    if artwork is None:
        return np.ones(photo.shape[:2], np.float32)

    def bins(rgb):
        lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        light = np.clip(lab[..., 0] / 100 * 4, 0, 3.999).astype(int)  # 4 bins of L*, 12 of a* and of b*
        a = np.clip((lab[..., 1] + 80) / 160 * 12, 0, 11.999).astype(int)
        b = np.clip((lab[..., 2] + 80) / 160 * 12, 0, 11.999).astype(int)
        return (light * 12 + a) * 12 + b

    printed = _artwork_mask(artwork) > 0
    if not printed.any():
        return np.ones(photo.shape[:2], np.float32)
    in_print = np.bincount(bins(artwork)[printed], minlength=576).astype(np.float64)
    photo_bins = bins(photo)
    in_photo = np.bincount(photo_bins.ravel(), minlength=576).astype(np.float64)
    ratio = np.minimum(in_print / in_print.sum() / np.maximum(in_photo / in_photo.sum(), 1e-9), 1.0)
    return cv2.GaussianBlur(ratio[photo_bins].astype(np.float32), (0, 0), 3.0)


def _grabcut(photo: np.ndarray, artwork: np.ndarray | None) -> np.ndarray:
    """The held package by GrabCut, initialised with a central rectangle (a held package fills the middle
    of the frame) in which pixels of the artwork's colours are probable foreground and those near the
    aim point sure foreground; the result is cut to the rectangle, to the print's colours and, when the
    print has no skin-like colours, away from the holding hand. Conservative: it may miss part of the
    package, so that an edit does not land on the shelf."""
    height, width = photo.shape[:2]
    like = _palette_likeness(photo, artwork)
    box = np.zeros((height, width), bool)
    box[int(0.05 * height):int(0.97 * height), int(0.12 * width):int(0.88 * width)] = True
    yy, xx = np.mgrid[0:height, 0:width]
    aim = ((xx - width / 2) / (0.10 * width)) ** 2 + ((yy - height / 2) / (0.16 * height)) ** 2 <= 1
    hand = np.zeros((height, width), bool)
    if artwork is not None and _skin_share(artwork) < SKIN_SHARE_MAX:
        hand = _skin(photo, np.full((height, width), 255, np.uint8)) > 0
    core = aim & (like > 0.5) & ~hand
    mask = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
    mask[box & (like > 0.3) & ~hand] = cv2.GC_PR_FGD
    mask[core] = cv2.GC_FGD
    border = max(2, round(0.02 * min(height, width)))
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = (cv2.GC_BGD,) * 4
    if not np.any((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)):
        mask[box] = cv2.GC_PR_FGD
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's global generator: fixed for determinism
    cv2.grabCut(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), mask, None, background, foreground, 5,
                cv2.GC_INIT_WITH_MASK)
    # A held package lies within this central ellipse; shelf items GrabCut joins to it mostly lie outside.
    central = ((xx - width / 2) / (0.27 * width)) ** 2 + ((yy - height / 2) / (0.47 * height)) ** 2 <= 1
    found = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)) & central & (like >= 0.05) & ~hand
    found = cv2.morphologyEx(found.astype(np.uint8) * 255, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    # Regions joined to the package only through a neck narrower than NECK of the frame are cut off.
    neck = max(3, int(NECK * min(height, width)) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (neck, neck))
    body = cv2.morphologyEx(found, cv2.MORPH_OPEN, disc)
    count, labels = cv2.connectedComponents((body > 0).astype(np.uint8))
    votes = np.bincount(labels[core], minlength=count) if core.any() else np.zeros(count, int)
    votes[0] = 0
    chosen = (labels == int(np.argmax(votes))) if count > 1 and votes.max() > 0 else _largest_component(body) > 0
    chosen = (cv2.dilate(chosen.astype(np.uint8), disc) > 0) & (found > 0)
    chosen = _fill_holes(_largest_component(chosen.astype(np.uint8) * 255)) if chosen.any() else chosen.astype(np.uint8)
    if np.count_nonzero(chosen) < MIN_GRABCUT_AREA * chosen.size:  # last resort: the aim point itself
        chosen = (aim & ~hand).astype(np.uint8) * 255
    return chosen


NECK = 0.06  # share of the frame's smaller side (~21 px of 348)
MIN_GRABCUT_AREA = 0.02  # share of the photo: less than this, and GrabCut did not find the package

SKIN_CR = (135, 175)  # YCrCb chroma of skin (white-balanced); saturated yellow/orange print lies outside
SKIN_CB = (85, 130)
SKIN_SHARE_MAX = 0.05  # a print with more skin-like colour than this (cream, peach) is not searched for a hand


def _skin_like(rgb: np.ndarray) -> np.ndarray:
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    return ((ycrcb[..., 1] >= SKIN_CR[0]) & (ycrcb[..., 1] <= SKIN_CR[1]) & (ycrcb[..., 2] >= SKIN_CB[0])
            & (ycrcb[..., 2] <= SKIN_CB[1]) & (ycrcb[..., 0] >= 40))


def _skin_share(artwork: np.ndarray) -> float:
    """Share of the artwork's printed area in skin colours."""
    printed = _artwork_mask(artwork) > 0
    return float(_skin_like(artwork)[printed].mean()) if printed.any() else 0.0


def _skin(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The holding hand: large skin-coloured blobs that reach the mask's outline (a hand enters the frame)."""
    # Grey-world white balance first: under a shop's warm light a white carton has the chroma of skin.
    means = photo.reshape(-1, 3).astype(np.float32).mean(axis=0) + 1e-3
    balanced = np.clip(photo.astype(np.float32) * (means.mean() / means), 0, 255).astype(np.uint8)
    skin = _skin_like(cv2.GaussianBlur(balanced, (0, 0), 1.5)).astype(np.uint8) * 255
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    outline = (mask > 0) & ~(cv2.erode(mask, np.ones((9, 9), np.uint8), borderType=cv2.BORDER_CONSTANT,
                                        borderValue=0) > 0)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    hand = np.zeros(mask.shape, np.uint8)
    for index in range(1, count):
        blob = labels == index
        if stats[index, cv2.CC_STAT_AREA] >= 0.03 * max(1, np.count_nonzero(mask)) and np.any(blob & outline):
            hand[blob] = 255
    return cv2.dilate(hand, np.ones((5, 5), np.uint8))


def package_region(photo: Image.Image, artwork: Image.Image | None = None) -> tuple[np.ndarray, str]:
    """-> (mask uint8 HxW, 255 on the package's print; method 'artwork' or 'grabcut').

    With the product's artwork, SIFT matches (Lowe's ratio test, RANSAC homography: inference.align)
    register it to the photo and its printed area is warped onto the photo. When that fails (the other
    side of the carton, too oblique, too few inliers) GrabCut from a central rectangle is used instead.
    """
    pixels = np.asarray(photo.convert("RGB"))
    art = None if artwork is None else np.asarray(artwork.convert("RGB"))
    if art is not None:
        registered = _register_artwork(pixels, art)
        if registered is not None:
            return registered, "artwork"
    return _grabcut(pixels, art), "grabcut"


# --------------------------------------------------------------------------- shared helpers of the edits


def _package_alpha(mask: np.ndarray) -> np.ndarray:
    """Blend weight 0..1: 1 well inside the package, falling softly to 0 at EDGE_ERODE px inside, 0 outside."""
    inside = (np.asarray(mask) > 0).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_ERODE + 1, 2 * EDGE_ERODE + 1))
    eroded = cv2.erode(inside, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)
    return cv2.GaussianBlur(eroded, (0, 0), EDGE_SOFTNESS) * inside


def _package_size(mask: np.ndarray) -> float:
    """Pixels: the square root of the package's area, the unit of an edit's window and shift."""
    return float(np.sqrt(max(1, np.count_nonzero(mask))))


def _compose(photo: np.ndarray, edited: np.ndarray, weight: np.ndarray) -> Image.Image:
    """photo + (edited - photo) * weight: exactly the photo wherever weight is 0."""
    out = photo.astype(np.float32) + (edited.astype(np.float32) - photo) * weight[..., None]
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _check_inputs(photo: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(photo.convert("RGB"))
    mask = np.asarray(mask)
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the photo's {pixels.shape[:2]}")
    if not np.any(_package_alpha(mask) > 0.5):
        raise ValueError("the package mask is empty (or too thin to edit inside)")
    return pixels, mask


def _hsv(pixels: np.ndarray) -> np.ndarray:
    """Float HSV: H in degrees 0..360, S and V in 0..1."""
    return cv2.cvtColor(pixels.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)


def _rgb(hsv: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(hsv.astype(np.float32), cv2.COLOR_HSV2RGB) * 255, 0, 255)


# --------------------------------------------------------------------------- ink: hue and lightness


def _main_ink(pixels: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (weight 0..1 of the package's main ink per pixel, HSV of the photo).

    The main ink is the largest cluster of saturated colour inside the package: the peak of a 10-degree
    hue histogram of its saturated pixels; pixels within 20 degrees of it belong to it, fading out to 30.
    A package printed without saturated colour falls back to less saturated pixels.
    """
    hsv = _hsv(pixels)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    inside = alpha > 0.5
    for min_sat in (0.30, 0.15, 0.06):
        chosen = inside & (sat >= min_sat) & (val >= 0.15)
        if np.count_nonzero(chosen) >= max(30, 0.03 * np.count_nonzero(inside)):
            break
    counts = np.bincount((hue[chosen] // 10).astype(int) % 36, minlength=36).astype(np.float32)
    counts = counts + 0.5 * (np.roll(counts, 1) + np.roll(counts, -1))  # circular smoothing
    peak = (int(np.argmax(counts)) + 0.5) * 10
    distance = np.abs((hue - peak + 180) % 360 - 180)
    weight = np.clip((30 - distance) / 10, 0, 1) * np.clip((sat - 0.5 * min_sat) / (0.5 * min_sat), 0, 1)
    weight *= np.clip((val - 0.1) / 0.05, 0, 1)
    return weight.astype(np.float32), hsv


def edit_hue(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The main ink printed in another hue: turned 15-30 degrees and 8-20% less saturated (a counterfeiter
    mixing a spot colour by eye, or printing it in CMYK)."""
    pixels, mask = _check_inputs(photo, mask)
    alpha = _package_alpha(mask)
    weight, hsv = _main_ink(pixels, alpha)
    turn = float(rng.uniform(15, 30) * rng.choice([-1, 1]))  # degrees of hue
    desaturate = float(rng.uniform(0.80, 0.92))  # factor on HSV saturation
    edited = hsv.copy()
    edited[..., 0] = (hsv[..., 0] + turn) % 360
    edited[..., 1] = hsv[..., 1] * desaturate
    return _compose(pixels, _rgb(edited), weight * alpha)


def edit_lightness(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The main ink printed 10-20% (of full scale, HSV value) lighter or darker: too much or too little ink."""
    pixels, mask = _check_inputs(photo, mask)
    alpha = _package_alpha(mask)
    weight, hsv = _main_ink(pixels, alpha)
    level = float(np.average(hsv[..., 2], weights=weight * alpha + 1e-6))
    change = float(rng.uniform(0.10, 0.20))  # fraction of full scale
    sign = float(rng.choice([-1, 1]))
    if level + sign * change > 0.97 or level + sign * change < 0.08:
        sign = -sign  # a light ink can only be printed darker, a dark one lighter
    edited = hsv.copy()
    edited[..., 2] = np.clip(hsv[..., 2] + sign * change, 0, 1)
    return _compose(pixels, _rgb(edited), weight * alpha)


# --------------------------------------------------------------------------- reprint


def edit_reprint(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The whole print reproduced from a copy: detail lost (down/up-sampling by 1.8-2.6x, blur sigma
    0.4-0.7 px), a halftone screen (period 2.5-3.5 px, 4-7% contrast), inks posterised to 20-32 levels and
    8-15% less saturated (a smaller gamut)."""
    pixels, mask = _check_inputs(photo, mask)
    alpha = _package_alpha(mask)
    height, width = pixels.shape[:2]
    factor = float(rng.uniform(1.8, 2.6))
    small = cv2.resize(pixels, (max(1, round(width / factor)), max(1, round(height / factor))),
                       interpolation=cv2.INTER_AREA)
    soft = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    soft = cv2.GaussianBlur(soft, (0, 0), float(rng.uniform(0.4, 0.7)))
    hsv = cv2.cvtColor(soft / 255, cv2.COLOR_RGB2HSV)
    hsv[..., 1] *= float(rng.uniform(0.85, 0.92))
    soft = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    period, angle = float(rng.uniform(2.5, 3.5)), float(rng.uniform(0, np.pi / 2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
    screen = np.cos(2 * np.pi * u / period) * np.cos(2 * np.pi * v / period)
    soft *= (1 + float(rng.uniform(0.04, 0.07)) * screen)[..., None]
    levels = int(rng.integers(20, 33))
    step = 255 / (levels - 1)
    soft = np.rint(np.clip(soft, 0, 255) / step) * step
    return _compose(pixels, soft, alpha)


# --------------------------------------------------------------------------- local edits, in the upright frame


def _upright(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine photo -> canvas that turns the package's long axis vertical (printed text then runs level);
    the identity when the package is not clearly elongated or already within 3 degrees of upright."""
    height, width = mask.shape
    moments = cv2.moments((mask > 0).astype(np.uint8), binaryImage=True)
    identity = np.float32([[1, 0, 0], [0, 1, 0]])
    if moments["m00"] <= 0:
        return identity, (width, height)
    mu20, mu02, mu11 = moments["mu20"], moments["mu02"], moments["mu11"]
    spread = np.sqrt(4 * mu11 ** 2 + (mu20 - mu02) ** 2)
    major, minor = (mu20 + mu02 + spread) / 2, (mu20 + mu02 - spread) / 2
    if minor <= 0 or major / minor < 1.4 ** 2:
        return identity, (width, height)
    axis = np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02))  # the major axis, degrees from the x axis
    tilt = (axis - 90 + 90) % 180 - 90  # from vertical, in [-90, 90)
    if abs(tilt) < 3:
        return identity, (width, height)
    centre = (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])
    rotation = cv2.getRotationMatrix2D(centre, float(tilt), 1.0)  # positive: counter-clockwise on screen
    corners = np.float32([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]]) @ rotation.T
    low, high = corners.min(axis=0), corners.max(axis=0)
    rotation[:, 2] -= low
    size = (int(np.ceil(high[0] - low[0])), int(np.ceil(high[1] - low[1])))
    return rotation.astype(np.float32), size


def _local_edit(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator, operation) -> Image.Image:
    """Run `operation(upright pixels float32, upright mask, package size, rng) -> (edited, weight)` in the
    upright frame; its change (times its weight) is turned back onto the photo inside the package."""
    pixels, mask = _check_inputs(photo, mask)
    alpha = _package_alpha(mask)
    transform, size = _upright(mask)
    height, width = pixels.shape[:2]
    identity = size == (width, height) and np.allclose(transform, np.float32([[1, 0, 0], [0, 1, 0]]))
    if identity:
        upright, upright_mask = pixels.astype(np.float32), mask
    else:
        upright = cv2.warpAffine(pixels, transform, size, flags=cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        upright_mask = cv2.warpAffine(mask, transform, size, flags=cv2.INTER_NEAREST, borderValue=0)
    upright_alpha = _package_alpha(upright_mask)
    edited, weight = operation(upright, upright_mask, upright_alpha, _package_size(upright_mask), rng)
    change = (edited - upright) * weight[..., None]
    if not identity:
        change = cv2.warpAffine(change, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _compose(pixels, pixels + change, alpha)


def _soft_box(shape: tuple[int, int], box: tuple[int, int, int, int], feather: float) -> np.ndarray:
    """1 inside the box (x, y, w, h), fading to 0 over `feather` pixels at its border."""
    x, y, w, h = box
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    inside_x = np.minimum(xx - x + 0.5, x + w - 0.5 - xx)
    inside_y = np.minimum(yy - y + 0.5, y + h - 0.5 - yy)
    return np.clip(np.minimum(inside_x, inside_y) / max(feather, 1e-3) + 0.5, 0, 1).astype(np.float32)


def _strokes(gray: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """-> (dark strokes, light strokes), float 0..255: black-hat and top-hat at glyph-stroke scale."""
    k = max(5, int(round(0.05 * size)) | 1)  # strokes up to ~5% of the package size (a few pixels)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel), cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel)


STROKE_CONTRAST = 28.0  # grey levels: a stroke stands out of its surroundings by at least this much
ELEMENT_DELTA_E = 22.0  # CIE Lab distance from a window's background colour at which a pixel is printed on it


def _dark_text(gray: np.ndarray) -> bool:
    """Text is the minority of a text window: dark text on a light ground pulls the mean below the median."""
    return float(np.median(gray)) >= float(gray.mean())


def _windows(mask_alpha: np.ndarray, w: int, h: int, score: np.ndarray) -> list:
    """Boxes (x, y, w, h) on a half-box grid lying inside the package, with the sum of `score` over each,
    best first."""
    height, width = mask_alpha.shape
    w, h = max(3, min(w, width)), max(3, min(h, height))
    inside = cv2.integral((mask_alpha > 0.9).astype(np.float32))
    scored = cv2.integral(score.astype(np.float32))
    found = []
    for y in range(0, height - h + 1, max(1, h // 3)):
        for x in range(0, width - w + 1, max(1, w // 4)):
            area = inside[y + h, x + w] - inside[y, x + w] - inside[y + h, x] + inside[y, x]
            if area < 0.92 * w * h:
                continue
            total = scored[y + h, x + w] - scored[y, x + w] - scored[y + h, x] + scored[y, x]
            found.append((float(total), (x, y, w, h)))
    found.sort(key=lambda item: -item[0])
    return found


def _pick(candidates: list, rng: np.random.Generator, top: int = 3) -> list:
    """The candidates in the order to try them: one of the best `top` first (chosen by rng), then the rest."""
    if not candidates:
        return []
    first = int(rng.integers(min(top, len(candidates))))
    return [candidates[first]] + candidates[:first] + candidates[first + 1:]


def _distinct(candidates: list, limit: int = 12) -> list:
    """Drop boxes overlapping a better one by more than half."""
    kept = []
    for score, (x, y, w, h) in candidates:
        if all(_overlap((x, y, w, h), box) < 0.5 for _, box in kept):
            kept.append((score, (x, y, w, h)))
        if len(kept) == limit:
            break
    return kept


def _overlap(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / float(min(a[2] * a[3], b[2] * b[3]))


def _text_windows(upright: np.ndarray, alpha: np.ndarray, size: float) -> list:
    """Text-like boxes first (many small high-contrast strokes: glyph-sized components of the stroke map),
    then the most contrasted boxes as a fallback for a package with no legible text at this resolution."""
    gray = cv2.cvtColor(upright.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    dark, light = _strokes(gray, size)
    glyphs = np.zeros(gray.shape, np.float32)
    for strokes in (dark, light):
        count, _, stats, centres = cv2.connectedComponentsWithStats((strokes > STROKE_CONTRAST).astype(np.uint8), 8)
        for index in range(1, count):
            _, _, w, h, area = stats[index]
            if 3 <= area and h <= 0.12 * size and w <= 0.15 * size:  # glyph-sized: at most ~12% of the package
                cx, cy = centres[index]
                glyphs[int(cy), int(cx)] += 1
    w, h = int(round(0.32 * size)), int(round(0.11 * size))  # a word or two of a text line
    strokes = np.maximum(dark, light) > STROKE_CONTRAST
    texty = []
    for _, box in _distinct(_windows(alpha, w, h, glyphs), limit=16):
        # Glyphs standing in a line, of one height, are text; a picture's specks are not.
        x, y, bw, bh = box
        line = _glyph_line(strokes, box)
        if line is not None and len(line[1]) >= 3:
            texty.append((float(len(line[1])), box))
    texty.sort(key=lambda item: -item[0])
    contrast = np.maximum(dark, light).astype(np.float32)
    fallback = _distinct(_windows(alpha, w, h, contrast))
    return texty + [c for c in fallback if all(_overlap(c[1], t[1]) < 0.5 for t in texty)]


def _try_windows(upright, windows, rng, change_in_box):
    """Apply `change_in_box(box) -> edited` to the windows in _pick order until one changes the print."""
    for _, box in _pick(windows, rng):
        edited = change_in_box(box)
        x, y, w, h = box
        # The change may reach past the box (a moved element): all of it counts, per pixel of the box.
        if edited is not None and np.abs(edited - upright).sum() / (3 * w * h) >= MIN_CHANGE:
            return edited, box
    return None, None


# --------------------------------------------------------------------------- font


def edit_font(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A substituted typeface: in a text-like window the strokes are made bolder or thinner by 0.5-1 px of
    the photo (grey-level morphology at 4x resolution), like a face one weight off the genuine one."""

    def operation(upright, mask_u, alpha, size, rng):
        bolder = bool(rng.random() < 0.5)
        radius = float(rng.uniform(0.5, 1.0))  # photo pixels added to (or taken from) each stroke's width
        gray = cv2.cvtColor(upright.astype(np.uint8), cv2.COLOR_RGB2GRAY)
        dark, light = _strokes(gray, size)

        def change(box):
            x, y, w, h = box
            margin = 4
            x0, y0 = max(0, x - margin), max(0, y - margin)
            x1, y1 = min(upright.shape[1], x + w + margin), min(upright.shape[0], y + h + margin)
            patch = upright[y0:y1, x0:x1]
            dark_text = _dark_text(gray[y:y + h, x:x + w])
            big = cv2.resize(patch, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
            k = max(3, int(round(4 * radius)) * 2 + 1)
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            # Dark text grows under erosion (the min filter), light text under dilation.
            grow = cv2.erode if dark_text == bolder else cv2.dilate
            morphed = cv2.resize(grow(big, kernel), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
            edited = upright.copy()
            edited[y0:y1, x0:x1] = morphed
            return edited

        edited, box = _try_windows(upright, _text_windows(upright, alpha, size), rng, change)
        if edited is None:
            return upright, np.zeros(upright.shape[:2], np.float32)
        return edited, _soft_box(upright.shape[:2], box, 2.0)

    return _local_edit(photo, mask, rng, operation)


# --------------------------------------------------------------------------- misspelling


def _glyph_line(strokes: np.ndarray, window: tuple[int, int, int, int]) -> tuple[tuple[int, int], list] | None:
    """The text line with most glyphs centred inside `window` (x, y, w, h) of a binary stroke map ->
    ((top, bottom) rows, glyph column spans sorted left to right); glyphs are whole stroke components
    (also where they reach past the window), merged where their columns overlap (a letter and its dots).
    None when no line of at least three glyphs is found."""
    x, y, w, h = window
    count, _, stats, centres = cv2.connectedComponentsWithStats(strokes.astype(np.uint8), connectivity=8)
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in range(1, count)
             if stats[i, 4] >= 4 and stats[i, 3] >= 3 and x <= centres[i][0] < x + w and y <= centres[i][1] < y + h]
    if len(boxes) < 3:
        return None
    best = None
    for _, top, _, height in boxes:  # each glyph proposes its line: glyphs overlapping its rows by half
        centre = top + height / 2
        members = [b for b in boxes if abs(b[1] + b[3] / 2 - centre) <= max(height, b[3]) / 2]
        if best is None or len(members) > len(best):
            best = members
    if len(best) < 3:
        return None
    median = float(np.median([b[3] for b in best]))
    best = [b for b in best if 0.5 * median <= b[3] <= 2 * median]
    spans = []
    for left, _, width, _ in sorted(best):
        if spans and left < spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], left + width))
        else:
            spans.append((left, left + width))
    top = min(b[1] for b in best)
    bottom = max(b[1] + b[3] for b in best)
    return (top, bottom), spans


def _deskew_angle(strokes: np.ndarray) -> float:
    """Degrees to rotate a patch (counter-clockwise on screen) so that its text runs level: the angle,
    in 3-degree steps within 45 degrees, whose horizontal projection of the strokes is most peaked (text
    turned further is left alone: a stack of short lines would pass for a line of glyphs)."""
    height, width = strokes.shape
    centre = (width / 2, height / 2)
    values = strokes.astype(np.float32)
    best, best_angle = -1.0, 0.0
    for angle in range(-45, 46, 3):
        rotated = cv2.warpAffine(values, cv2.getRotationMatrix2D(centre, float(angle), 1.0), (width, height),
                                 flags=cv2.INTER_LINEAR)
        spread = float(rotated.sum(axis=1).var())
        if spread > best * 1.02 or (abs(spread - best) <= 0.02 * best and abs(angle) < abs(best_angle)):
            best, best_angle = max(spread, best), float(angle)
    return best_angle


def _swap_glyphs(patch: np.ndarray, strokes: np.ndarray, window: tuple[int, int, int, int], duplicate: bool,
                 rng: np.random.Generator, slices: bool) -> np.ndarray | None:
    """In a level text patch: two adjacent glyphs of the densest line inside `window` swapped (or the left
    one printed again over the right one when their widths are within 30%); with `slices`, two glyph-wide
    column slices of the line instead. None when no pair changes the print."""
    x, y, w, h = window
    options = []
    if not slices:
        found = _glyph_line(strokes, window)
        if found is None:
            return None
        (top, bottom), spans = found
        line = bottom - top
        for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
            # Separate glyphs (a clear gap, not wider than the line is tall), each 0.2-1.2 line heights wide.
            if 1 <= b0 - a1 <= 0.8 * line and all(0.2 * line <= e - s <= 1.2 * line for s, e in ((a0, a1), (b0, b1))):
                options.append((top, bottom, a0, a1, b0, b1))
    else:
        inside = strokes[y:y + h, x:x + w]
        columns, rows = np.flatnonzero(inside.any(axis=0)), np.flatnonzero(inside.any(axis=1))
        if len(columns) == 0:
            return None
        top, bottom = y + int(rows.min()), y + int(rows.max()) + 1
        glyph = max(3, int(round(0.55 * (bottom - top))))
        start = x + int(np.clip(columns.mean() - glyph, 0, max(0, w - 2 * glyph)))
        if start + 2 * glyph <= x + w:
            options.append((top, bottom, start, start + glyph, start + glyph, start + 2 * glyph))
    for index in rng.permutation(len(options)):
        top, bottom, a0, a1, b0, b1 = options[index]
        rows = slice(max(0, top - 1), min(patch.shape[0], bottom + 1))
        left, gap, right = patch[rows, a0:a1], patch[rows, a1:b0], patch[rows, b0:b1]
        edited = patch.copy()
        if duplicate and abs((a1 - a0) - (b1 - b0)) <= 0.3 * max(a1 - a0, b1 - b0):
            edited[rows, b0:b1] = cv2.resize(left, (b1 - b0, left.shape[0]), interpolation=cv2.INTER_LINEAR)
        else:
            edited[rows, a0:b1] = np.concatenate([right, gap, left], axis=1)
        if np.abs(edited[rows, a0:b1] - patch[rows, a0:b1]).mean() >= 4 * MIN_CHANGE:
            return edited
    return None


def edit_misspelling(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A misspelt word: in a text line two adjacent glyphs swapped, or one printed again in place of its
    neighbour of about the same width. The text-like window is levelled first (projection-profile
    deskew); glyphs are the stroke components of its densest line (two glyph-wide slices, 0.55x the line
    height, when none separate)."""

    def operation(upright, mask_u, alpha, size, rng):
        gray = cv2.cvtColor(upright.astype(np.uint8), cv2.COLOR_RGB2GRAY)
        dark, light = _strokes(gray, size)
        duplicate = bool(rng.random() < 0.35)
        state = {}

        def change(box):
            x, y, w, h = box
            use = dark if _dark_text(gray[y:y + h, x:x + w]) else light
            margin = max(w, h) // 2
            x0, y0 = max(0, x - margin), max(0, y - margin)
            x1, y1 = min(upright.shape[1], x + w + margin), min(upright.shape[0], y + h + margin)
            patch, strokes = upright[y0:y1, x0:x1], (use[y0:y1, x0:x1] > STROKE_CONTRAST).astype(np.float32)
            inner = (x - x0, y - y0, w, h)
            angle = _deskew_angle(strokes)
            size_p = (x1 - x0, y1 - y0)
            turn = cv2.getRotationMatrix2D((size_p[0] / 2, size_p[1] / 2), angle, 1.0)
            level = cv2.warpAffine(patch, turn, size_p, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            level_strokes = cv2.warpAffine(strokes, turn, size_p, flags=cv2.INTER_LINEAR) > 0.5
            swapped = _swap_glyphs(level, level_strokes, inner, duplicate, rng, state["slices"])
            if swapped is None:
                return None
            delta = cv2.warpAffine(swapped - level, turn, size_p, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            edited = upright.copy()
            edited[y0:y1, x0:x1] += delta
            state["box"] = (x0, y0, x1 - x0, y1 - y0)
            return edited

        windows = _text_windows(upright, alpha, size)
        for slices in (False, True):  # whole glyphs in any window first; glyph-wide slices as the fallback
            state["slices"] = slices
            edited, box = _try_windows(upright, windows, rng, change)
            if edited is not None:
                return edited, _soft_box(upright.shape[:2], state["box"], 0.75)
        return upright, np.zeros(upright.shape[:2], np.float32)

    return _local_edit(photo, mask, rng, operation)


# --------------------------------------------------------------------------- logo


def edit_logo(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A redrawn logo: a distinctive element in a plainer surround (see _element_windows) reshaped about
    its centre by scaling 4-8%, rotating 3-6 degrees and skewing 3-6%."""

    def operation(upright, mask_u, alpha, size, rng):
        scale = 1 + float(rng.uniform(0.04, 0.08) * rng.choice([-1, 1]))
        angle = float(rng.uniform(3, 6) * rng.choice([-1, 1]))  # degrees
        skew = float(rng.uniform(0.03, 0.06) * rng.choice([-1, 1]))  # horizontal shift per unit of height
        state = {}

        def change(box):
            x, y, w, h = box
            centre = (x + w / 2, y + h / 2)
            affine = np.vstack([cv2.getRotationMatrix2D(centre, angle, scale), [0, 0, 1]])
            shear = np.float32([[1, skew, -skew * centre[1]], [0, 1, 0], [0, 0, 1]])
            matrix = (affine @ shear)[:2].astype(np.float32)
            moved = cv2.warpAffine(upright, matrix, (upright.shape[1], upright.shape[0]), flags=cv2.INTER_CUBIC,
                                   borderMode=cv2.BORDER_REFLECT)
            state["box"] = (x - 1, y - 1, w + 2, h + 2)
            weight = _soft_box(upright.shape[:2], state["box"], 1.5)
            return upright + (moved - upright) * weight[..., None]

        windows = _element_windows(upright, alpha, size, aspects=(1.0, 1.5, 1 / 1.5))
        edited, _ = _try_windows(upright, windows, rng, change)
        if edited is None:
            return upright, np.zeros(upright.shape[:2], np.float32)
        return edited, np.ones(upright.shape[:2], np.float32)

    return _local_edit(photo, mask, rng, operation)


# --------------------------------------------------------------------------- shift


RING_WEIGHT = 2.0


def _element_windows(upright: np.ndarray, alpha: np.ndarray, size: float,
                     aspects: tuple[float, ...] = (1.0, 1.8, 1 / 1.8)) -> list:
    """Boxes around a printed element standing out of a plainer surround (a logo, a word, a badge):
    ranked by contrast x isolation: the mean gradient energy inside times its share of itself plus
    RING_WEIGHT times that along a 2-px ring just outside, over boxes of 12-30% of the package size in a
    few shapes (`aspects`), so that cutting one out cuts through little else."""
    lab = cv2.cvtColor(upright.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    energy = sum(np.abs(cv2.Sobel(lab[..., c], cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(lab[..., c], cv2.CV_32F, 0, 1))
                 for c in range(3))
    table = cv2.integral(energy.astype(np.float32))
    inside = cv2.integral((alpha > 0.9).astype(np.float32))
    height, width = energy.shape

    def total(t, x, y, w, h):
        return t[y + h, x + w] - t[y, x + w] - t[y + h, x] + t[y, x]

    found = []
    ring = 2
    for scale in (0.12, 0.18, 0.24, 0.30):
        for aspect in aspects:
            w = max(6, int(round(scale * size * np.sqrt(aspect))))
            h = max(6, int(round(scale * size / np.sqrt(aspect))))
            for y in range(ring, height - h - ring, max(1, h // 4)):
                for x in range(ring, width - w - ring, max(1, w // 4)):
                    grown = (x - ring, y - ring, w + 2 * ring, h + 2 * ring)
                    if total(inside, *grown) < 0.97 * grown[2] * grown[3]:
                        continue
                    inner = total(table, x, y, w, h)
                    outer = total(table, *grown) - inner
                    ring_area = (w + 2 * ring) * (h + 2 * ring) - w * h
                    contrast, around = inner / (w * h), outer / ring_area
                    found.append((float(contrast * contrast / (contrast + RING_WEIGHT * around + 1e-6)), (x, y, w, h)))
    found.sort(key=lambda item: -item[0])
    return _distinct(found)


def edit_shift(photo: Image.Image, mask: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A misplaced element: a whole printed element (a word, a logo) moved 3-6% of the package size along
    one of the package's axes, over its ground; where it was, the ground is filled in from its
    surroundings (inpainting)."""

    def operation(upright, mask_u, alpha, size, rng):
        distance = max(2, int(round(float(rng.uniform(0.03, 0.06)) * size)))  # pixels of the photo
        directions = [(1, 0), (-1, 0), (0, 1), (0, -1)]
        order = [directions[i] for i in rng.permutation(4)]
        gray = cv2.cvtColor(np.clip(upright, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        dark, light = _strokes(gray, size)
        state = {}

        lab = cv2.cvtColor(np.clip(upright, 0, 255).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)

        def element(box):
            """A whole printed element near the box: what differs from the ground colour (the median along
            the rim of the box grown by half, then all of, its length), its parts merged into words or a
            logo by a closing of 4% of the package size; the group nearest the box centre that lies wholly
            inside the grown box and spans 6-45% of the package size. Grown 3 px, so that a photographed
            glyph's blurred halo moves with it."""
            x, y, w, h = box
            found = np.zeros(upright.shape[:2], np.uint8)
            for grow in (max(w, h) // 2, max(w, h)):
                x0, y0 = max(0, x - grow), max(0, y - grow)
                x1, y1 = min(upright.shape[1], x + w + grow), min(upright.shape[0], y + h + grow)
                patch = lab[y0:y1, x0:x1]
                rim = np.concatenate([patch[:2].reshape(-1, 3), patch[-2:].reshape(-1, 3),
                                      patch[:, :2].reshape(-1, 3), patch[:, -2:].reshape(-1, 3)])
                printed = (np.linalg.norm(patch - np.median(rim, axis=0), axis=2) > ELEMENT_DELTA_E).astype(np.uint8)
                join = max(3, int(round(0.04 * size)) | 1)
                groups = cv2.morphologyEx(printed, cv2.MORPH_CLOSE,
                                          cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (join, join)))
                count, labels, stats, centres = cv2.connectedComponentsWithStats(groups, connectivity=8)
                best, best_distance = 0, np.inf
                for index in range(1, count):
                    gx, gy, gw, gh, _ = stats[index]
                    whole = gx > 0 and gy > 0 and gx + gw < x1 - x0 and gy + gh < y1 - y0
                    distance = np.hypot(centres[index][0] + x0 - (x + w / 2), centres[index][1] + y0 - (y + h / 2))
                    if whole and 0.06 * size <= max(gw, gh) <= 0.45 * size and distance < best_distance:
                        best, best_distance = index, distance
                if best:
                    state["printed"] = np.zeros(upright.shape[:2], bool)
                    state["printed"][y0:y1, x0:x1] = printed > 0
                    found[y0:y1, x0:x1] = ((labels == best) & (printed > 0)).astype(np.uint8) * 255
                    break
            return cv2.dilate(found, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))

        def change(box):
            if state["whole_box"]:  # the fallback: the box itself is the element
                x, y, w, h = box
                moved_from = np.zeros(upright.shape[:2], np.uint8)
                moved_from[y:y + h, x:x + w] = 255
            else:
                moved_from = element(box)
            if np.count_nonzero(moved_from) < 12:
                return None
            for dx, dy in order:
                shift = np.float32([[1, 0, dx * distance], [0, 1, dy * distance]])
                moved_to = cv2.warpAffine(moved_from, shift, (upright.shape[1], upright.shape[0]),
                                          flags=cv2.INTER_NEAREST, borderValue=0)
                if np.count_nonzero(moved_to) < np.count_nonzero(moved_from) or alpha[moved_to > 0].min() < 0.5:
                    continue  # keep the moved element on the package
                landing = (moved_to > 0) & (moved_from == 0)
                if not state["whole_box"] and state["printed"][landing].mean() > 0.1:
                    continue  # it would land on other print: a counterfeiter misplaces, he does not overprint
                # The hole reaches 2 px further than what moves: no trace of the element's halo stays behind.
                hole = cv2.dilate(moved_from, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
                base = cv2.inpaint(np.clip(upright, 0, 255).astype(np.uint8), hole, 3, cv2.INPAINT_TELEA)
                pasted = cv2.warpAffine(upright, shift, (upright.shape[1], upright.shape[0]), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_REFLECT)
                weight = cv2.GaussianBlur(moved_to.astype(np.float32) / 255, (0, 0), 1.0)[..., None]
                edited = base.astype(np.float32) * (1 - weight) + pasted * weight
                ys, xs = np.nonzero((hole > 0) | (moved_to > 0))
                state["box"] = (int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max() - xs.min()) + 5,
                                int(ys.max() - ys.min()) + 5)
                return edited
            return None

        size_p = upright.shape[:2]
        windows = _text_windows(upright, alpha, size) + _element_windows(upright, alpha, size)
        for whole_box in (False, True):  # a whole element first; a rectangle of the print as the fallback
            state["whole_box"] = whole_box
            edited, _ = _try_windows(upright, windows, rng, change)
            if edited is not None:
                return edited, _soft_box(size_p, state["box"], 1.5)
        return upright, np.zeros(size_p, np.float32)

    return _local_edit(photo, mask, rng, operation)


EDITS: dict[str, Callable[[Image.Image, np.ndarray, np.random.Generator], Image.Image]] = {
    "hue": edit_hue, "lightness": edit_lightness, "reprint": edit_reprint, "font": edit_font,
    "logo": edit_logo, "misspelling": edit_misspelling, "shift": edit_shift,
}
assert tuple(EDITS) == KINDS
