"""The served model, replaceable without downtime.

A new file is loaded and proven (loads, metadata complete, answers a sample image) before it takes
the old one's place; until then, and if it fails, the old model keeps serving. Requests that already
hold the old Predictor finish with it, so every answer names the version that produced it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from inference.metadata import ModelFileError
from inference.predictor import Predictor

log = logging.getLogger("counterfeit.model")


def validate(predictor: Predictor) -> None:
    """Raise ModelFileError unless the model answers a sample image with a finite score."""
    spec = predictor.spec
    sample = np.zeros((1, 3, spec.height, spec.width), dtype=np.float32)  # the mean colour, normalised
    try:
        scores = predictor.scores(sample)
    except Exception as exc:
        raise ModelFileError(f"{predictor.path} failed on a sample image: {str(exc)[:200]}") from exc
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise ModelFileError(f"{predictor.path} answered a sample image with {scores!r}, not one finite score.")


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
