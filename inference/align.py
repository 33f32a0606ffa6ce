"""Registration: find which known product a photo shows and resample its front into that product's
reference frame, so the print can be compared location by location with genuine photos (issue 3).

Whole-frame models stay at chance on packaging photos: pose, background and light vary far more than a
substituted font or a shifted colour. Aligned to a genuine reference, the print lines up pixel for pixel.

SIFT keypoints (OpenCV) of the photo, letterboxed to the model input, are matched to each product's
reference keypoints (Lowe's ratio test); a RANSAC homography maps the reference frame onto the photo,
and the product with most inliers wins. Torch-free: serving uses it too.
"""

from __future__ import annotations

import base64
import functools
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from inference.preprocess import PreprocessSpec, letterbox

MIN_INLIERS = 15  # fewer consistent matches than this: no known product is in the photo
RATIO = 0.75  # Lowe's ratio test: keep a match only if clearly better than the second best
RANSAC_PIXELS = 4.0  # reprojection error (pixels of the model input) that still counts as an inlier
MAX_KEYPOINTS = 1500
DESCRIPTOR_SIZE = 128  # SIFT


class NotRecognised(ValueError):
    """No known product could be registered in the photo."""


@dataclass(frozen=True)
class Reference:
    """One product's genuine reference: keypoints in the model-input frame."""

    product: str
    points: np.ndarray  # (K, 2) float32, x and y in pixels of the frame
    descriptors: np.ndarray  # (K, 128) float32 SIFT descriptors


@dataclass(frozen=True)
class Registration:
    product: int  # index into the references
    homography: np.ndarray  # (3, 3): reference frame -> letterboxed photo
    inliers: int


@functools.cache
def _cv2():
    try:
        import cv2
    except ImportError as exc:  # a serving install without the base dependencies
        raise ModuleNotFoundError("registration needs OpenCV: pip install opencv-python-headless",
                                  name="cv2") from exc
    cv2.setNumThreads(1)  # requests run in parallel threads already
    return cv2


_local = threading.local()  # OpenCV detector objects are not documented as thread-safe: one per thread


def _sift():
    if not hasattr(_local, "sift"):
        _local.sift = _cv2().SIFT_create(nfeatures=MAX_KEYPOINTS)
    return _local.sift


def keypoints(frame: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """-> (points (K, 2) float32, descriptors (K, 128) float32) of an RGB image; K may be 0."""
    cv2 = _cv2()
    gray = cv2.cvtColor(np.asarray(frame.convert("RGB")), cv2.COLOR_RGB2GRAY)
    found, descriptors = _sift().detectAndCompute(gray, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    return np.array([k.pt for k in found], np.float32).reshape(-1, 2), descriptors.astype(np.float32)


def match(reference: Reference, points: np.ndarray, descriptors: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """-> (homography reference frame -> photo or None, indices of the reference keypoints that agree with it)."""
    cv2 = _cv2()
    none = (None, np.zeros(0, np.int64))
    if len(points) < 4 or len(reference.points) < 4:
        return none
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(reference.descriptors, descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < 4:
        return none
    mine = np.array([m.queryIdx for m in good])
    homography, mask = cv2.findHomography(reference.points[mine], points[[m.trainIdx for m in good]],
                                          cv2.RANSAC, RANSAC_PIXELS)
    return none if homography is None else (homography, mine[mask.ravel().astype(bool)])


def register(frame: Image.Image, references: list[Reference]) -> Registration | None:
    """The best-matching product of a letterboxed photo, or None below MIN_INLIERS."""
    return best_match(*keypoints(frame), references)


def best_match(points: np.ndarray, descriptors: np.ndarray, references: list[Reference]) -> Registration | None:
    """register() for keypoints already found (training finds each photo's keypoints once)."""
    best = None
    for index, reference in enumerate(references):
        homography, agreeing = match(reference, points, descriptors)
        if homography is not None and len(agreeing) >= MIN_INLIERS and (best is None or len(agreeing) > best.inliers):
            best = Registration(index, homography, len(agreeing))
    return best


def warp(frame: Image.Image, homography: np.ndarray) -> Image.Image:
    """The photo resampled into the reference frame (same size): pixel p of the result is photo(H p)."""
    cv2 = _cv2()
    size = frame.size
    pixels = cv2.warpPerspective(np.asarray(frame.convert("RGB")), homography, size,
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(pixels)


def align(image: Image.Image, references: list[Reference], spec: PreprocessSpec) -> tuple[Image.Image, Registration]:
    """-> (the photo in its product's reference frame, how it was registered). NotRecognised if none matches."""
    frame = letterbox(image, spec)
    found = register(frame, references)
    if found is None:
        raise NotRecognised("No known product was found in the photo: photograph the front of the package "
                            "so that it fills most of the frame, in focus.")
    return warp(frame, found.homography), found


def to_photo(values: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map over the reference frame (any resolution) -> the same map over the letterboxed photo of `size`
    (zero where the reference frame does not reach): where a heatmap's evidence is on the photo itself."""
    cv2 = _cv2()
    full = cv2.resize(np.asarray(values, np.float32), size, interpolation=cv2.INTER_LINEAR)
    return cv2.warpPerspective(full, homography, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


# --------------------------------------------------------------------------- model-file form


def references_to_json(references: list[Reference]) -> dict:
    """For the model file's metadata: products, keypoint counts, and base64 of all points/descriptors."""
    points = np.concatenate([r.points for r in references]).astype("<f4")
    # SIFT descriptors are integers 0..255 stored as floats: one byte each keeps the model file small.
    descriptors = np.clip(np.rint(np.concatenate([r.descriptors for r in references])), 0, 255).astype(np.uint8)
    return {"products": [r.product for r in references], "counts": [len(r.points) for r in references],
            "points": base64.b64encode(points.tobytes()).decode("ascii"),
            "descriptors": base64.b64encode(descriptors.tobytes()).decode("ascii")}


def references_from_json(values: dict) -> list[Reference]:
    """Inverse of references_to_json; ValueError when the parts do not add up."""
    counts = [int(c) for c in values["counts"]]
    products = [str(p) for p in values["products"]]
    points = np.frombuffer(base64.b64decode(values["points"]), "<f4").reshape(-1, 2)
    descriptors = np.frombuffer(base64.b64decode(values["descriptors"]), np.uint8).reshape(-1, DESCRIPTOR_SIZE)
    if len(products) != len(counts) or not products or sum(counts) != len(points) or len(points) != len(descriptors):
        raise ValueError("references: products, counts, points and descriptors do not match")
    starts = np.cumsum([0] + counts)
    return [Reference(product, points[a:b].astype(np.float32), descriptors[a:b].astype(np.float32))
            for product, a, b in zip(products, starts[:-1], starts[1:])]
