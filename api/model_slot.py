"""The served model, replaceable without downtime.

A new file is loaded and proven (loads, metadata complete and sane, version matching its content, real
sample photos scored through its whole pipeline) before it takes the old one's place; until then, and if
it fails, the old model keeps serving. Requests that already hold the old Predictor finish with it, so
every answer names the version that produced it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from inference.align import NotRecognised
from inference.assets import SAMPLES_DIR
from inference.metadata import ModelFileError
from inference.predictor import Predictor, Prepared, stacked
from inference.preprocess import normalise

log = logging.getLogger("counterfeit.model")



def sample_photos() -> list[bytes]:
    """The bundled sample photos' bytes, in name order."""
    return [path.read_bytes() for path in sorted(SAMPLES_DIR.glob("*.jpg"))]


def validate(predictor: Predictor) -> None:
    """Raise ModelFileError unless the model scores the sample photos, decoded and prepared as in serving,
    with finite inputs and finite scores in [0, 1]."""
    try:
        prepared = [_prepared_sample(predictor, image) for image in _sample_images(predictor)]
        scores = predictor.scores(*stacked(prepared))
    except ModelFileError:
        raise
    except Exception as exc:  # onnxruntime, OpenCV or numpy on a broken model: the reason, not a 500
        raise ModelFileError(f"{predictor.path} failed on the sample photos: {str(exc)[:200]}") from exc
    if scores.shape != (len(prepared),) or not (np.isfinite(scores) & (scores >= 0) & (scores <= 1)).all():
        raise ModelFileError(f"{predictor.path} scored the {len(prepared)} sample photos {scores!r}: scores must "
                             "be finite probabilities in [0, 1]. Re-export or re-calibrate the model.")


def _sample_images(predictor: Predictor) -> list[Image.Image]:
    """The sample photos decoded for this model; a plain grey photo if the package lost them."""
    photos = sample_photos()
    if not photos:
        log.warning("no sample photos in %s: validating the model on a plain grey image only", SAMPLES_DIR)
        return [Image.new("RGB", predictor.spec.size, (128, 128, 128))]
    return [predictor.load(data).image for data in photos]


def _prepared_sample(predictor: Predictor, image: Image.Image) -> Prepared:
    """The photo as the model takes it. A reference model whose products are not the samples' cannot
    register them: the photo, plainly resized to the input size, still runs through its graph."""
    spec = predictor.spec
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are refused below
        try:
            prepared = predictor.prepare(image)
        except NotRecognised:
            prepared = Prepared(normalise(image.resize(spec.size, Image.Resampling.BILINEAR), spec))
    if not np.isfinite(prepared.array).all():  # e.g. a std so small that float32 overflows
        raise ModelFileError(f"{predictor.path}: preprocessing a sample photo gives non-finite values: the model's "
                             f"preprocess metadata (mean {spec.mean}, std {spec.std}) is broken. "
                             "Re-export the model.")
    return prepared


def load_validated(path: Path, threads: int = 0) -> Predictor:
    predictor = Predictor(path, threads=threads)
    validate(predictor)
    return predictor


class ModelSlot:
    def __init__(self, predictor: Predictor | None = None) -> None:
        self.current = predictor
        self._lock = threading.Lock()  # one reload at a time; readers never wait for it

    def reload(self, path: Path, threads: int = 0) -> Predictor:
        """Load and validate `path`, then swap it in. Raises ModelFileError and keeps the old model."""
        with self._lock:
            predictor = load_validated(path, threads)
            old, self.current = self.current, predictor
        old_version = old.metadata.version if old else None
        log.info("model reloaded from %s: version %s -> %s", path, old_version, predictor.metadata.version)
        return predictor


def resolve_in(directory: Path, requested: str) -> Path:
    """`requested` as a file inside `directory`; anything that escapes it is refused (no ../, no links out)."""
    base = directory.resolve()
    candidate = (base / requested).resolve()
    if not candidate.is_relative_to(base):
        raise ModelFileError(f"{requested!r} is outside the model directory {directory}: only files there can be loaded.")
    return candidate
