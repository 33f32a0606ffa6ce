"""The served model, replaceable without downtime.

A new file is loaded and proven (loads, metadata complete and sane, version matching its content, real
sample photos scored through its whole pipeline) before it takes the old one's place; until then, and if
it fails, the old model keeps serving. Requests that already hold the old Predictor finish with it, so
every answer names the version that produced it.

A reload proves the new file in a child process whose memory is bounded (VALIDATION_MEMORY_MB): a 1.5 KB
graph can expand each photo to 12000 x 12000 floats, and proving it in the server took the server from 0.7
to 3.1 GB, kept afterwards (issue 24). The server then loads the very bytes the child proved (same SHA-256).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
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
# Memory (RLIMIT_DATA: heap and private mappings) of the child that proves a new model file, and how long it may
# take. The demo model's proof peaks at 425 MB; a 43-product reference model's file alone is about 300 MB.
VALIDATION_MEMORY_MB = 2048
VALIDATION_TIMEOUT_S = 120


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


def validate_in_child(path: Path, memory_mb: int = VALIDATION_MEMORY_MB,
                      timeout_s: float = VALIDATION_TIMEOUT_S) -> str:
    """Prove `path` (load_validated) in a child process with at most `memory_mb` of memory -> the SHA-256 of
    the bytes it proved. ModelFileError with the reason otherwise (over the bound, too slow, crashed)."""
    code = "import sys; from api.model_slot import _prove; _prove(sys.argv[1], int(sys.argv[2]))"
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path), str(memory_mb)], capture_output=True,
                              text=True, timeout=timeout_s, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{path}: proving it on the sample photos took over {timeout_s:.0f} s: refused.") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {}
    if done.returncode == 0 and "sha256" in answer:
        return answer["sha256"]
    reason = answer.get("error") or (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
    raise ModelFileError(f"{path} was refused while it was proved with at most {memory_mb} MB of memory: {reason}")


def _prove(path: str, memory_mb: int) -> None:
    """The child's side of validate_in_child: one JSON line, {"sha256": ...} or {"error": ...}."""
    import resource

    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        predictor = load_validated(Path(path), threads=1)
        print(json.dumps({"sha256": predictor.file_sha256}))
    except ModelFileError as exc:
        print(json.dumps({"error": str(exc)}))
        sys.exit(1)
    except MemoryError:
        print(json.dumps({"error": f"it needs more than {memory_mb} MB to score the sample photos"}))
        sys.exit(1)


class ModelSlot:
    def __init__(self, predictor: Predictor | None = None) -> None:
        self.current = predictor
        self._lock = threading.Lock()  # one reload at a time; readers never wait for it

    def reload(self, path: Path, threads: int = 0) -> Predictor:
        """Prove `path` in a bounded child, load it, then swap it in. Raises ModelFileError and keeps the old
        model."""
        with self._lock:
            proved = validate_in_child(path)
            predictor = Predictor(path, threads=threads)
            if predictor.file_sha256 != proved:  # replaced between the proof and the load
                raise ModelFileError(f"{path} changed while it was being proved: reload it again.")
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
