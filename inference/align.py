"""Registration: find which known product a photo shows and resample its front into that product's
reference frame, so the print can be compared location by location with genuine photos (issue 3).

Whole-frame models stay at chance on packaging photos: pose, background and light vary far more than a
substituted font or a shifted colour. Aligned to a genuine reference, the print lines up pixel for pixel.

SIFT keypoints (OpenCV) of the photo, letterboxed to the model input, are matched to each product's
reference keypoints (Lowe's ratio test); a RANSAC homography maps the reference frame onto the photo,
and the product with most inliers on its own keypoints (not marked shared with other products) wins.
Torch-free: serving uses it too.

Per photo (issue 15): keypoints are matched by one exact matrix product per product (squared_distances), and
RANSAC runs only for products that can still win (best_match); both give the answers of before. (Keypoints
found on a frame reduced by sqrt(2) were 4x cheaper and kept ROC-AUC on unchanged photos, but called rotated
genuines counterfeit 2-4x as often (synth-h0 rotate-180: 23.7% against 6.2%). That was mostly SIFT_OFFSET;
with it corrected, and photos held sideways not reduced, rotations held, but sharpened genuines were still
called counterfeit 3x as often (synth-h0 sharpen: 11.2% against 3.8%): not kept.)
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
# OpenCV's SIFT reports every keypoint 0.25 px right of and below where it is (pixel centres; it doubles the
# image before its first octave and maps points back by halving, without the half-pixel shift). Photo and
# reference alike carry it, so it cancels for an upright photo; a photo turned by 180 degrees carries it the
# other way round and lands 0.5 px off in x and y (90/270: 0.5 px in one of them), enough to call genuines
# counterfeit. Measured (synth-h0 test photos turned 180, keypoints matched back): -0.50 px each way. With the
# points corrected (`counterfeit evaluate --robustness`, synth-h0 test): rotate-180 genuines called
# counterfeit 6.2% -> 0%, ROC-AUC 0.974 -> 0.993; unchanged photos 0.9957 -> 0.9949.
SIFT_OFFSET = 0.25  # px of the image SIFT ran on
# How references_to_json writes points: corrected for SIFT_OFFSET. Files written before hold OpenCV's points.
COORDINATES = "pixel-centre"


class NotRecognised(ValueError):
    """No known product could be registered in the photo."""


@dataclass(frozen=True)
class Reference:
    """One product's genuine reference: keypoints in the model-input frame."""

    product: str
    points: np.ndarray  # (K, 2) float32, x and y in pixels of the frame
    descriptors: np.ndarray  # (K, 128) float32 SIFT descriptors
    # (K,) bool: the keypoints photos of other products register on too (marked()); None: not known, every
    # keypoint counts as the product's own.
    shared: np.ndarray | None = None

    def own(self, indices: np.ndarray) -> int:
        """How many of these keypoints (indices) are the product's own: not marked shared."""
        return len(indices) if self.shared is None else int(len(indices) - self.shared[indices].sum())


@dataclass(frozen=True)
class Registration:
    product: int  # index into the references
    homography: np.ndarray  # (3, 3): reference frame -> letterboxed photo
    inliers: int
    own: int  # of the inliers, those on keypoints not marked shared (Reference.shared)

    def rank(self) -> tuple[int, int]:
        """What decides between products: inliers on the product's own keypoints, then all inliers."""
        return self.own, self.inliers


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
    points = np.array([k.pt for k in found], np.float32).reshape(-1, 2) - SIFT_OFFSET
    return points, descriptors.astype(np.float32)


@dataclass(frozen=True)
class Candidate:
    """A reference's keypoints that passed the ratio test against a photo, before any homography."""

    mine: np.ndarray  # (M,) indices of the reference keypoints
    theirs: np.ndarray  # (M,) indices of the photo keypoints they matched


def candidates(reference: Reference, points: np.ndarray, descriptors: np.ndarray) -> Candidate:
    """Each reference keypoint's nearest photo keypoint, kept only when clearly nearer than the second
    (Lowe's ratio test)."""
    if len(points) < 4 or len(reference.points) < 4:
        return Candidate(np.zeros(0, np.int64), np.zeros(0, np.int64))
    squared = squared_distances(reference.descriptors, descriptors)
    rows = np.arange(len(squared))
    nearest = squared.argmin(axis=1)
    first = squared[rows, nearest].astype(np.float64)
    squared[rows, nearest] = np.inf
    keep = first < RATIO**2 * squared.min(axis=1)  # d1 < RATIO * d2, on squares: no square roots
    return Candidate(rows[keep], nearest[keep])


def squared_distances(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """(len(ours), len(theirs)) squared L2 distances of SIFT descriptors, as one matrix product: 3x less CPU
    than OpenCV's brute-force matcher (62 vs 194 ms a photo against real-grocery's 43 references) and the
    same matches. SIFT descriptors hold whole numbers 0..255 (OpenCV rounds them; references are stored as
    bytes), so every product and sum here is a whole number below 2**24: float32 computes it exactly, in
    any order, and the nearest two are those of the brute-force matcher."""
    return (np.einsum("ij,ij->i", ours, ours)[:, None] + np.einsum("ij,ij->i", theirs, theirs)[None, :]
            - 2 * (ours @ theirs.T))


def fit_homography(reference: Reference, points: np.ndarray,
                   found: Candidate) -> tuple[np.ndarray | None, np.ndarray]:
    """-> (RANSAC homography reference frame -> photo or None, indices of the reference keypoints that agree)."""
    none = (None, np.zeros(0, np.int64))
    if len(found.mine) < 4:
        return none
    homography, mask = _cv2().findHomography(reference.points[found.mine], points[found.theirs],
                                             _cv2().RANSAC, RANSAC_PIXELS)
    return none if homography is None else (homography, found.mine[mask.ravel().astype(bool)])


def match(reference: Reference, points: np.ndarray, descriptors: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """-> (homography reference frame -> photo or None, indices of the reference keypoints that agree with it)."""
    return fit_homography(reference, points, candidates(reference, points, descriptors))


def registered_inliers(reference: Reference, points: np.ndarray, descriptors: np.ndarray) -> np.ndarray | None:
    """The reference keypoints that agree with a homography registering the photo (keypoints), or None when
    fewer than MIN_INLIERS do: the photo does not show the reference's product."""
    homography, agreeing = match(reference, points, descriptors)
    return agreeing if homography is not None and len(agreeing) >= MIN_INLIERS else None


def register(frame: Image.Image, references: list[Reference]) -> Registration | None:
    """The best-matching product of a letterboxed photo, or None below MIN_INLIERS."""
    return best_match(*keypoints(frame), references)


def best_match(points: np.ndarray, descriptors: np.ndarray, references: list[Reference]) -> Registration | None:
    """register() for keypoints already found (training finds each photo's keypoints once): of the products
    with at least MIN_INLIERS RANSAC inliers, the one with most inliers on its own keypoints (Registration.rank),
    the first of equals; None if there is none.

    Sister products (the same brand's flavours) share much of their print, and photos taken at a shelf show
    the neighbours: a photo of one product gathers many inliers on another's reference, on the brand's logo
    or on the neighbour itself. Counting all inliers sent 17.9% of the real benchmark's val/test genuines to
    another product, counting the product's own 12.0%, and its own product got 69.5% instead of 63.6%
    (docs/comparator.md, "Registration")."""
    found = [candidates(reference, points, descriptors) for reference in references]
    bounds = [(references[i].own(found[i].mine), len(found[i].mine)) for i in range(len(references))]
    best = None
    # Inliers are a subset of the ratio-test matches, so a product whose matches rank below the best
    # registration so far cannot win: its RANSAC (1-2 ms each) is skipped. Best-ranked matches first makes
    # that bound tight early; the answer is the one of trying all.
    for index in sorted(range(len(references)), key=lambda i: (-bounds[i][0], -bounds[i][1])):
        if best is not None and bounds[index][0] < best.own:
            break
        if bounds[index][1] < MIN_INLIERS or (best is not None and not _may_beat(index, bounds[index], best)):
            continue
        homography, agreeing = fit_homography(references[index], points, found[index])
        if homography is not None and len(agreeing) >= MIN_INLIERS:
            candidate = Registration(index, homography, len(agreeing), references[index].own(agreeing))
            best = candidate if _beats(candidate, best) else best
    return best


def _beats(candidate: Registration, best: Registration | None) -> bool:
    """The better rank wins; of equals, the product listed first (as when trying them in order)."""
    return best is None or candidate.rank() > best.rank() or (candidate.rank() == best.rank()
                                                              and candidate.product < best.product)


def _may_beat(index: int, bound: tuple[int, int], best: Registration) -> bool:
    """Whether a product whose matches rank `bound` could still rank above `best` (inliers <= matches)."""
    return bound > best.rank() or (bound == best.rank() and index < best.product)


def marked(reference: Reference, others: list[tuple[np.ndarray, np.ndarray]]) -> Reference:
    """The reference with its `shared` keypoints marked: those that agree with the homography of a photo of
    another product (keypoints, descriptors) registering to it (at least MIN_INLIERS inliers): a shelf
    neighbour, or the brand's print a sister product carries too. Marks already there are kept."""
    shared = np.zeros(len(reference.points), bool) if reference.shared is None else reference.shared.copy()
    for points, descriptors in others:
        agreeing = registered_inliers(reference, points, descriptors)
        if agreeing is not None:
            shared[agreeing] = True
    return Reference(reference.product, reference.points, reference.descriptors, shared)


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
    shared = _packed_marks(references)
    return {"coordinates": COORDINATES, "products": [r.product for r in references],
            "counts": [len(r.points) for r in references],
            "points": base64.b64encode(points.tobytes()).decode("ascii"),
            "descriptors": base64.b64encode(descriptors.tobytes()).decode("ascii"),
            **({"shared": shared} if shared is not None else {})}


def references_from_json(values: dict) -> list[Reference]:
    """Inverse of references_to_json; ValueError when the parts do not add up."""
    counts = [int(c) for c in values["counts"]]
    products = [str(p) for p in values["products"]]
    points = np.frombuffer(base64.b64decode(values["points"]), "<f4").reshape(-1, 2)
    descriptors = np.frombuffer(base64.b64decode(values["descriptors"]), np.uint8).reshape(-1, DESCRIPTOR_SIZE)
    if len(products) != len(counts) or not products or sum(counts) != len(points) or len(points) != len(descriptors):
        raise ValueError("references: products, counts, points and descriptors do not match")
    if values.get("coordinates") != COORDINATES:  # a model file from before the SIFT_OFFSET correction
        points = points - SIFT_OFFSET
    starts = np.cumsum([0] + counts)
    shared = _unpacked_marks(values.get("shared"), len(points))
    return [Reference(product, points[a:b].astype(np.float32), descriptors[a:b].astype(np.float32),
                      None if shared is None else shared[a:b]) for product, a, b in zip(products, starts[:-1], starts[1:])]


def _packed_marks(references: list[Reference]) -> str | None:
    """Every reference's `shared` marks, one bit a keypoint, base64; None when no reference has marks."""
    if all(r.shared is None for r in references):
        return None
    bits = np.concatenate([np.zeros(len(r.points), bool) if r.shared is None else r.shared for r in references])
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def _unpacked_marks(text: str | None, count: int) -> np.ndarray | None:
    if text is None:  # a model file from before the marks: every keypoint is its product's own
        return None
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))
    if len(bits) != -(-count // 8) * 8 or bits[count:].any():
        raise ValueError("references: the shared marks do not match the keypoints")
    return bits[:count].astype(bool)
