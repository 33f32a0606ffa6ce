"""What the API does with photos, without HTTP: decode, check quality, score (batched), answer.

Routes in api/routes/ only read requests and call these.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np

from api.batching import Batcher
from api.errors import ApiError
from api.evidence_fields import inspection_fields, screening_fields
from api.pixel_budget import BudgetBusy, shared_budget
from api.schemas import Inspection, ScreeningResult, Screenings
from api.settings import Settings
from evidence_store import EvidenceStore
from inference.classes import RETAKE
from inference.images import ImageError, LoadedImage, decode_cost
from inference.metadata import ModelFileError
from inference.pipeline import Checked, check_and_prepare, decode_and_prepare
from inference.predictor import Predictor, decoded_size
from inference.provenance import validated_on_real_photos
from inference.quality import QualityReport

MB = 1024 * 1024
MAX_ID_CHARS = 200  # a screening's caller id: a listing or seller id, not a page of text


class ServerBusy(ApiError):
    """503 with Retry-After: the decode budget did not come free within settings.decode_wait_s."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(503, "server_busy", "The server is decoding other photos and has no memory free for "
                         f"this one right now; nothing was scored or stored. Retry in {retry_after_s} s.",
                         headers={"Retry-After": str(retry_after_s)})


@dataclass(frozen=True)
class ForEvidence:
    """What the evidence record needs besides the answer: the model's embedding (None when not scored)
    and the photo as already decoded (None when it could not be), so the store does not decode it again."""

    embedding: np.ndarray | None = None
    decoded: LoadedImage | None = None


def model_fields(predictor: Predictor) -> dict:
    meta = predictor.metadata
    return {"thresholds": meta.thresholds.to_dict(),
            "model": {"name": meta.name, "version": meta.version,
                      "demo": not validated_on_real_photos(meta.provenance)}}


def image_fields(data: bytes, loaded: LoadedImage) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "width": loaded.width, "height": loaded.height}


def photo_fields(data: bytes, checked: Checked, predictor: Predictor) -> dict:
    """What every answer says of a checked photo: its image, its quality and, once it is ready to be
    scored, the product it was recognised as."""
    loaded, quality, prepared = checked
    fields = {"image": image_fields(data, loaded), "quality": quality_fields(quality)}
    if prepared is not None:
        fields["product"] = predictor.product_of(prepared)
    return fields


def quality_fields(report: QualityReport) -> dict:
    fields = asdict(report)
    return {**fields, "reasons": list(fields["reasons"])}


def decoding_cost(data: bytes, predictor: Predictor, settings: Settings) -> int:
    """Peak bytes of memory predictor.load(data) takes (it decodes for the model's input size). ImageError
    for a photo that cannot be decoded, or whose decoding alone would need more than the whole budget."""
    cost = decode_cost(data, limits=settings.limits, draft_to=decoded_size(predictor.spec))
    if cost > settings.decode_budget_mb * MB:
        raise ImageError("too_many_pixels", f"Decoding this photo would take about {cost / MB:,.0f} MB of memory, "
                         f"more than this server's decode budget of {settings.decode_budget_mb:,} MB. Send a photo "
                         "with fewer pixels, or as a JPEG (JPEGs decode at reduced size).", status=413)
    return cost


@contextmanager
def decode_budget(nbytes: int, settings: Settings) -> Iterator[None]:
    """Hold `nbytes` of the process's decode budget for the block; ServerBusy (503) if they do not come
    free within settings.decode_wait_s."""
    budget = shared_budget(settings.decode_budget_mb * MB)
    try:
        budget.acquire(nbytes, settings.decode_wait_s)
    except BudgetBusy as exc:
        raise ServerBusy(retry_after_s=max(1, round(settings.decode_wait_s))) from exc
    try:
        yield
    finally:
        budget.release(nbytes)


def inspect_photo(data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings,
                  explain: bool = False) -> tuple[Inspection, ForEvidence]:
    """One photo -> (verdict, what its evidence record needs). A photo that fails the quality gate
    gets 'retake' and no score."""
    with batcher.expecting():
        return _inspect(data, predictor, batcher, settings, explain)


def _inspect(data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings, explain: bool):
    with decode_budget(decoding_cost(data, predictor, settings), settings):
        decoded = predictor.load(data, settings.limits)
    checked = check_and_prepare(decoded, predictor, settings.quality_thresholds)
    loaded, _, prepared = checked
    answer = {**model_fields(predictor), **photo_fields(data, checked, predictor)}
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


def screen_photos(photos: Sequence[bytes], ids: list[str] | None, predictor: Predictor, batcher: Batcher,
                  settings: Settings, *, store: EvidenceStore | None = None,
                  subject: str = "") -> tuple[Screenings, list[ForEvidence]]:
    """Many photos, each independent: one bad photo gets its own error and the rest are scored.
    -> (the answer, each photo's embedding for its evidence record).

    Photos are decoded and scored settings.max_batch at a time (each batch queued before any of it is
    awaited, so it fills as few model calls as possible); with a `store`, each batch is recorded as
    evidence (as `subject`) before the next is decoded, and its decoded photos are then dropped: a
    screening holds one batch of decoded photos, not all of them. The decode budget for the largest
    photo is reserved once, before anything is scored or stored (503 if it does not come free).
    """
    check_screening_ids(ids)
    costs = [_cost_or_error(data, predictor, settings) for data in photos]
    header = Screenings(results=[], **model_fields(predictor))
    results: list[ScreeningResult] = []
    kept: list[ForEvidence] = []
    with decode_budget(max((c for c in costs if isinstance(c, int)), default=0), settings):
        for start in range(0, len(photos), settings.max_batch):
            part = range(start, min(len(photos), start + settings.max_batch))
            batch_results, batch_kept = _screen_batch(part, photos, ids, costs, predictor, batcher, settings,
                                                      store, subject, header)
            results += batch_results
            kept += batch_kept
    return header.model_copy(update={"results": results}), kept


def check_screening_ids(ids: list[str] | None) -> None:
    """422 for an id that could not be stored as evidence: over MAX_ID_CHARS, or with control characters."""
    for index, value in enumerate(ids or ()):
        if len(value) > MAX_ID_CHARS:
            raise ApiError(422, "invalid_id", f"ids[{index}] is {len(value):,} characters long; an id may have "
                           f"at most {MAX_ID_CHARS}. Send the listing or seller id itself.")
        if any(unicodedata.category(char) == "Cc" for char in value):
            raise ApiError(422, "invalid_id", f"ids[{index}] contains a control character (such as NUL, a tab "
                           "or a line break); send the id as plain text on one line.")


def _cost_or_error(data: bytes, predictor: Predictor, settings: Settings) -> int | ImageError:
    try:
        return decoding_cost(data, predictor, settings)
    except ImageError as exc:  # the photo's own error entry: the others are still screened
        return exc


def _screen_batch(part: range, photos: Sequence[bytes], ids: list[str] | None, costs: list[int | ImageError],
                  predictor: Predictor, batcher: Batcher, settings: Settings, store: EvidenceStore | None,
                  subject: str, header: Screenings) -> tuple[list[ScreeningResult], list[ForEvidence]]:
    """Screen (and record) photos[part]; -> their results and embeddings. Their decoded photos live only
    as long as this call."""
    with batcher.expecting(len(part)):
        pending = [_queue_one(i, photos[i], ids, costs[i], predictor, batcher, settings) for i in part]
        finished = [_finish(*queued, predictor) for queued in pending]
    answer = header.model_copy(update={"results": [result for result, _ in finished]})
    if store is not None:
        answer = record_screenings(store, [photos[i] for i in part], answer, [k for _, k in finished], subject)
    return answer.results, [ForEvidence(embedding=k.embedding) for _, k in finished]


def _queue_one(index: int, data: bytes, ids: list[str] | None, cost: int | ImageError, predictor: Predictor,
               batcher: Batcher, settings: Settings) -> tuple[dict, LoadedImage | None, Future | None]:
    """Decode and check one photo and queue it for scoring; or its error / retake entry. Its decode budget
    (`cost`, no more than the largest) is held by the whole screening."""
    entry = {"index": index, "id": ids[index] if ids else None}
    if isinstance(cost, ImageError):  # refused from its header already
        return _error_entry(entry, cost), None, None
    try:
        checked = decode_and_prepare(data, predictor, settings.limits, settings.quality_thresholds)
    except ImageError as exc:
        return _error_entry(entry, exc), None, None
    loaded, _, prepared = checked
    entry.update(photo_fields(data, checked, predictor))
    if prepared is None:
        return {**entry, "verdict": RETAKE}, loaded, None
    return entry, loaded, batcher.submit(predictor, prepared)


def _error_entry(entry: dict, error: ImageError) -> dict:
    return {**entry, "error": {"code": error.code, "message": error.message}}


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


def record_screenings(store: EvidenceStore, photos: Sequence[bytes], screenings: Screenings,
                      kept: list[ForEvidence], subject: str) -> Screenings:
    """Keep every scored listing photo (with its caller id) as evidence, for linking seizures to listings.
    screen_photos(store=...) calls it per batch."""
    results = []
    for data, result, for_evidence in zip(photos, screenings.results, kept):
        if result.error is None:
            record = store.record(image_bytes=data, **screening_fields(result, screenings), subject=subject,
                                  embedding=for_evidence.embedding,
                                  decoded=for_evidence.decoded)
            result = result.model_copy(update={"record_id": record.id})
        results.append(result)
    return screenings.model_copy(update={"results": results})
