"""What the API does with photos, without HTTP: decode, check quality, score (batched), answer.

Routes in inference/api.py only read requests and call these.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import Future
from dataclasses import asdict, dataclass

import numpy as np

from inference.batching import Batcher
from inference.errors import ApiError
from inference.evidence import EvidenceStore, inspection_fields, screening_fields
from inference.images import ImageError, LoadedImage
from inference.metadata import ModelFileError
from inference.align import NotRecognised
from inference.predictor import Predictor, Prepared
from inference.quality import QualityReport, check, not_recognised
from inference.schemas import Inspection, ScreeningResult, Screenings
from inference.settings import Settings

RETAKE = "retake"


@dataclass(frozen=True)
class ForEvidence:
    """What the evidence record needs besides the answer: the model's embedding (None when not scored)
    and the photo as already decoded (None when it could not be), so the store does not decode it again."""

    embedding: np.ndarray | None = None
    decoded: LoadedImage | None = None


def model_fields(predictor: Predictor) -> dict:
    meta = predictor.metadata
    return {"thresholds": meta.thresholds.to_dict(),
            "model": {"name": meta.name, "version": meta.version}}


def image_fields(data: bytes, loaded: LoadedImage) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "width": loaded.width, "height": loaded.height}


def quality_fields(report: QualityReport) -> dict:
    fields = asdict(report)
    return {**fields, "reasons": list(fields["reasons"])}


def decode_and_prepare(data: bytes, predictor: Predictor,
                        settings: Settings) -> tuple[LoadedImage, QualityReport, Prepared | None]:
    """-> (the decoded photo, its quality, the model input or None when it must be retaken)."""
    loaded = predictor.load(data, settings.limits)
    quality = check(loaded.image, (loaded.width, loaded.height), settings.quality_thresholds)
    if not quality.ok:
        return loaded, quality, None
    try:
        return loaded, quality, predictor.prepare(loaded.image)
    except NotRecognised:  # a reference model found none of its products: a guess would be worthless
        return loaded, not_recognised(quality), None


def inspect_photo(data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings,
                  explain: bool = False) -> tuple[Inspection, ForEvidence]:
    """One photo -> (verdict, what its evidence record needs). A photo that fails the quality gate
    gets 'retake' and no score."""
    with batcher.expecting():
        return _inspect(data, predictor, batcher, settings, explain)


def _inspect(data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings, explain: bool):
    loaded, quality, prepared = decode_and_prepare(data, predictor, settings)
    answer = {**model_fields(predictor), "image": image_fields(data, loaded), "quality": quality_fields(quality)}
    if prepared is None:
        return Inspection(verdict=RETAKE, score=None, **answer), ForEvidence(decoded=loaded)
    if explain:
        try:
            score, heatmap_png, embedding = predictor.explain(prepared)
        except ModelFileError as exc:
            raise ApiError(422, "explain_unavailable", str(exc)) from exc
        answer["heatmap"] = base64.b64encode(heatmap_png).decode("ascii")
    else:
        score, embedding = batcher.score(predictor, prepared)
    return Inspection(verdict=predictor.decide(score).verdict, score=score, **answer), ForEvidence(embedding, loaded)


def screen_photos(photos: list[bytes], ids: list[str] | None, predictor: Predictor, batcher: Batcher,
                  settings: Settings) -> tuple[Screenings, list[ForEvidence]]:
    """Many photos, each independent: one bad photo gets its own error and the rest are scored.
    -> (the answer, what each photo's evidence record needs).

    Every photo is queued before any is awaited, so the whole request fills as few batches as possible.
    """
    with batcher.expecting(len(photos)):
        pending = [_queue_one(index, data, ids, predictor, batcher, settings) for index, data in enumerate(photos)]
        finished = [_finish(*queued, predictor) for queued in pending]
    results = [result for result, _ in finished]
    return Screenings(results=results, **model_fields(predictor)), [kept for _, kept in finished]


def _queue_one(index: int, data: bytes, ids: list[str] | None, predictor: Predictor, batcher: Batcher,
               settings: Settings) -> tuple[dict, LoadedImage | None, Future | None]:
    """Decode and check one photo and queue it for scoring; or its error / retake entry."""
    entry = {"index": index, "id": ids[index] if ids else None}
    try:
        loaded, quality, prepared = decode_and_prepare(data, predictor, settings)
    except ImageError as exc:
        return {**entry, "error": {"code": exc.code, "message": exc.message}}, None, None
    entry.update(image=image_fields(data, loaded), quality=quality_fields(quality))
    if prepared is None:
        return {**entry, "verdict": RETAKE}, loaded, None
    return entry, loaded, batcher.submit(predictor, prepared)


def _finish(entry: dict, loaded: LoadedImage | None, future: Future | None,
            predictor: Predictor) -> tuple[ScreeningResult, ForEvidence]:
    if future is None:
        return ScreeningResult(**entry), ForEvidence(decoded=loaded)
    score, embedding = future.result()
    entry.update(score=score, verdict=predictor.decide(score).verdict)
    return ScreeningResult(**entry), ForEvidence(embedding, loaded)


def record_inspection(store: EvidenceStore, data: bytes, inspection: Inspection, kept: ForEvidence,
                      subject: str, location: str | None, case: str | None, note: str | None) -> Inspection:
    """Keep the inspection as evidence; the answer then names its record."""
    record = store.record(image_bytes=data, **inspection_fields(inspection), subject=subject,
                          location=location, case=case, note=note, embedding=kept.embedding, decoded=kept.decoded)
    return inspection.model_copy(update={"id": record.id, "recorded_at": record.created_at})


def record_screenings(store: EvidenceStore, photos: list[bytes], screenings: Screenings,
                      kept: list[ForEvidence], subject: str) -> Screenings:
    """Keep every scored listing photo (with its caller id) as evidence, for linking seizures to listings."""
    results = []
    for data, result, for_evidence in zip(photos, screenings.results, kept):
        if result.error is None:
            record = store.record(image_bytes=data, **screening_fields(result, screenings), subject=subject,
                                  embedding=for_evidence.embedding,
                                  decoded=for_evidence.decoded)
            result = result.model_copy(update={"record_id": record.id})
        results.append(result)
    return screenings.model_copy(update={"results": results})
