"""One photo's way to a model input, shared by the server, evaluation and bulk screening: decode (reduced to
what the model and the quality gate need), the quality gate, then registration and preprocessing."""

from __future__ import annotations

from inference.align import NotRecognised
from inference.images import Limits, LoadedImage
from inference.predictor import Predictor, Prepared
from inference.quality import QualityReport, QualityThresholds, check, not_recognised, nothing_recognised

Checked = tuple[LoadedImage, QualityReport, "Prepared | None"]


def decode_and_prepare(data: bytes, predictor: Predictor, limits: Limits = Limits(),
                       thresholds: QualityThresholds = QualityThresholds()) -> Checked:
    """Photo bytes -> (the decoded photo, its quality, the model input or None when it must be retaken).
    ImageError for bytes that are no photo, or too large under `limits`."""
    return check_and_prepare(predictor.load(data, limits), predictor, thresholds)


def check_and_prepare(loaded: LoadedImage, predictor: Predictor,
                      thresholds: QualityThresholds = QualityThresholds()) -> Checked:
    """A decoded photo -> (it, its quality, the model input or None when it must be retaken)."""
    quality = check(loaded.image, (loaded.width, loaded.height), thresholds, loaded.jpeg_quality)
    if quality.reasons == ("blurry",) and predictor.metadata.references:
        return loaded, *_blurry_or_elsewhere(loaded, quality, predictor)
    if not quality.ok:
        return loaded, quality, None
    try:
        return loaded, quality, predictor.prepare(loaded.image)
    except NotRecognised:  # a reference model found none of its products: a guess would be worthless
        return loaded, not_recognised(quality), None


def _blurry_or_elsewhere(loaded: LoadedImage, quality: QualityReport, predictor: Predictor):
    """A photo with little detail is blurry, or shows no package at all (a wall, a table): "blurry: hold the
    phone still" alone would mislead for the second. A photo that still registers is the product, blurred;
    one that registers to nothing is said to show no known product first (it may also be too blurred)."""
    try:
        predictor.prepare(loaded.image)
    except NotRecognised:
        return nothing_recognised(quality), None
    return quality, None
