"""What the API does with photos, without HTTP: decode, check quality, score (batched), answer.

Routes in inference/api.py only read requests and call these.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import Future
from dataclasses import asdict

from inference.batching import Batcher
from inference.errors import ApiError
from inference.images import ImageError, LoadedImage
from inference.metadata import ModelFileError
from inference.predictor import Predictor
from inference.preprocess import preprocess
from inference.quality import QualityReport, check
from inference.schemas import Inspection, ScreeningResult, Screenings
from inference.settings import Settings

RETAKE = "retake"


def model_fields(predictor: Predictor) -> dict:
    meta = predictor.metadata
    return {"thresholds": {"low": meta.thresholds.low, "high": meta.thresholds.high},
            "model": {"name": meta.name, "version": meta.version}}


def image_fields(data: bytes, loaded: LoadedImage) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "width": loaded.width, "height": loaded.height}


def quality_fields(report: QualityReport) -> dict:
    fields = asdict(report)
    return {**fields, "reasons": list(fields["reasons"])}


def _decode_and_check(data: bytes, predictor: Predictor, settings: Settings) -> tuple[LoadedImage, QualityReport]:
    loaded = predictor.load(data, settings.limits)
    return loaded, check(loaded.image, (loaded.width, loaded.height), settings.quality_thresholds)


def inspect_photo(data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings,
                  explain: bool = False) -> Inspection:
    """One photo -> verdict. A photo that fails the quality gate gets 'retake' and no score."""
    with batcher.expecting():
        return _inspect(data, predictor, batcher, settings, explain)


def _inspect(data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings, explain: bool) -> Inspection:
    loaded, quality = _decode_and_check(data, predictor, settings)
    answer = {**model_fields(predictor), "image": image_fields(data, loaded), "quality": quality_fields(quality)}
    if not quality.ok:
        return Inspection(verdict=RETAKE, score=None, **answer)
    array = preprocess(loaded.image, predictor.spec)
    if explain:
        try:
            score, heatmap_png = predictor.explain(array)
        except ModelFileError as exc:
            raise ApiError(422, "explain_unavailable", str(exc)) from exc
        answer["heatmap"] = base64.b64encode(heatmap_png).decode("ascii")
    else:
        score = batcher.score(predictor, array)
    return Inspection(verdict=predictor.decide(score).verdict, score=score, **answer)


def screen_photos(photos: list[bytes], ids: list[str] | None, predictor: Predictor, batcher: Batcher,
                  settings: Settings) -> Screenings:
    """Many photos, each independent: one bad photo gets its own error and the rest are scored.

    Every photo is queued before any is awaited, so the whole request fills as few batches as possible.
    """
    with batcher.expecting(len(photos)):
        pending = [_queue_one(index, data, ids, predictor, batcher, settings) for index, data in enumerate(photos)]
        results = [_finish(entry, future, predictor) for entry, future in pending]
    return Screenings(results=results, **model_fields(predictor))


def _queue_one(index: int, data: bytes, ids: list[str] | None, predictor: Predictor, batcher: Batcher,
               settings: Settings) -> tuple[dict, Future | None]:
    """Decode and check one photo and queue it for scoring; or its error / retake entry."""
    entry = {"index": index, "id": ids[index] if ids else None}
    try:
        loaded, quality = _decode_and_check(data, predictor, settings)
    except ImageError as exc:
        return {**entry, "error": {"code": exc.code, "message": exc.message}}, None
    entry.update(image=image_fields(data, loaded), quality=quality_fields(quality))
    if not quality.ok:
        return {**entry, "verdict": RETAKE}, None
    return entry, batcher.submit(predictor, preprocess(loaded.image, predictor.spec))


def _finish(entry: dict, future: Future | None, predictor: Predictor) -> ScreeningResult:
    if future is not None:
        score = future.result()
        entry.update(score=score, verdict=predictor.decide(score).verdict)
    return ScreeningResult(**entry)
