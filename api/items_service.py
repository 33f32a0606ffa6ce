"""What POST /v1/items does, without HTTP: score each photo of one item as an inspection is scored, check
that they can be judged together (api.item_checks), combine them (inference.items), keep them as evidence.

The order of judgement: the same photo sent twice -> retake (a side is missing, and one photo would be kept
as two); photos of two product lines -> retake (which item is this?); else a photo the
model calls counterfeit on its own -> the item is counterfeit, even when another photo must be retaken
or a side is missing (no other side can make it genuine); else a photo to retake or a missing side ->
retake; else the combined score against the item's thresholds (its calibration's, else the model's).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Sequence

from api.batching import Batcher
from api.evidence_fields import item_fields, item_photo_fields
from api.item_checks import Retake, missing_side, mixed_products, photo_retake, repeated_photo
from api.schemas import Item, ItemPhoto
from api.service import ForEvidence, decode_budget, decoding_cost, model_fields, photo_fields
from api.settings import Settings
from evidence_store import EvidenceStore, Record
from evidence_store.records import new_id
from inference.classes import COUNTERFEIT, GENUINE, INCONCLUSIVE, RETAKE
from inference.images import ImageError
from inference.items import CALIBRATED, WORST_PHOTO, combine, combiner_of, item_thresholds
from inference.pipeline import check_and_prepare
from inference.predictor import Predictor, verdict_for

MIN_PHOTOS, MAX_PHOTOS = 2, 8  # an item: front and back at least; 8 covers every side and a detail or two


def inspect_item(photos: Sequence[bytes], predictor: Predictor, batcher: Batcher,
                 settings: Settings) -> tuple[Item, list[ForEvidence]]:
    """The photos of one item -> (its answer, each photo's evidence inputs). A photo that is no image
    refuses the whole request (4xx naming the photo): nothing is scored or stored then."""
    costs = [_numbered(number, decoding_cost, data, predictor, settings) for number, data in enumerate(photos, 1)]
    with decode_budget(max(costs), settings), batcher.expecting(len(photos)):
        queued = [_queue(number, data, predictor, batcher, settings) for number, data in enumerate(photos, 1)]
        finished = [_finish(answer, future, predictor) for answer, future, _ in queued]
    item = judge([answer for answer, _ in finished], predictor)
    return item, [ForEvidence(embedding, loaded) for (_, embedding), (_, _, loaded) in zip(finished, queued)]


def _numbered(number: int, call, *args):
    try:
        return call(*args)
    except ImageError as exc:
        raise ImageError(exc.code, f"Photo {number}: {exc.message}", status=exc.status) from exc


def _queue(number: int, data: bytes, predictor: Predictor, batcher: Batcher, settings: Settings):
    """Decode and check one photo and queue it for scoring -> (its answer so far, its future or None, the
    decoded photo)."""
    decoded = _numbered(number, predictor.load, data, settings.limits)
    checked = check_and_prepare(decoded, predictor, settings.quality_thresholds)
    loaded, _, prepared = checked
    # A retake until scored (_finish); a photo that cannot be judged stays one, with no future.
    answer = ItemPhoto(verdict=RETAKE, score=None, **model_fields(predictor), **photo_fields(data, checked, predictor))
    return answer, None if prepared is None else batcher.submit(predictor, prepared), loaded


def _finish(answer: ItemPhoto, future: Future | None, predictor: Predictor):
    """-> (the photo's answer, its embedding or None)."""
    if future is None:
        return answer, None
    score, embedding = future.result()
    return answer.model_copy(update={"score": score, "verdict": predictor.decide(score).verdict}), embedding


def judge(photos: list[ItemPhoto], predictor: Predictor) -> Item:
    """One verdict for the item from its photos' answers (see the module's docstring for the order)."""
    meta = predictor.metadata
    combiner = combiner_of(meta.metrics)
    thresholds = item_thresholds(meta.thresholds, combiner)
    header = {**model_fields(predictor), "thresholds": thresholds.to_dict(),
              "combination": CALIBRATED if combiner else WORST_PHOTO, "photos": photos}
    scored = [photo for photo in photos if photo.score is not None]
    retake = repeated_photo(photos) or mixed_products(scored, meta)
    if retake is None and not any(photo.verdict == COUNTERFEIT for photo in scored):
        retake = photo_retake(photos) or missing_side(scored, meta)
    if retake is not None or not scored:
        return _retake(header, retake or photo_retake(photos))
    score = combine([photo.score for photo in scored], meta.thresholds, combiner)
    verdict = verdict_for(score, thresholds)
    message = _verdict_message(verdict, photos, demo=header["model"]["demo"])
    return Item(verdict=verdict, score=score, message=message, **header)


def _retake(header: dict, retake: Retake) -> Item:
    return Item(verdict=RETAKE, score=None, reason=retake.reason, message=retake.message,
                missing_sides=list(retake.missing_sides), **header)


# A model never validated on real photos (inference/provenance.py) gives no advice to act on.
DEMO_NOT_EVIDENCE = "Demo: not evidence (the model has seen synthetic photos only)."


def _verdict_message(verdict: str, photos: list[ItemPhoto], demo: bool = False) -> str:
    if verdict == COUNTERFEIT:
        sides = [str(n) for n, photo in enumerate(photos, 1) if photo.verdict == COUNTERFEIT]
        where = f" (photo {', '.join(sides)} on its own)" if sides else ""
        if demo:  # no advice to hold anything
            return f"{DEMO_NOT_EVIDENCE} The item shows signs of counterfeiting{where}."
        return f"The item shows signs of counterfeiting{where}: hold it for investigation."
    if demo and verdict == GENUINE:
        return f"{DEMO_NOT_EVIDENCE} The item looks genuine on every photo."
    if verdict == RETAKE:
        return "Retake the photos."
    return {GENUINE: "The item looks genuine on every photo.",
            INCONCLUSIVE: "The photos do not decide: inspect the item by hand."}[verdict]


def record_item(store: EvidenceStore, photos: Sequence[bytes], item: Item, kept: list[ForEvidence],
                subject: str, location: str | None, case: str | None, note: str | None) -> Item:
    """Keep each photo ("item_photo") and the item's verdict ("item") under one new item id; the answer then
    names it. The item's record is written last, so an item that GET /v1/items/{id} finds is complete."""
    item_id = new_id()
    where = {"subject": subject, "location": location, "case": case, "note": note}
    answers = []
    for data, photo, evidence in zip(photos, item.photos, kept):
        record = store.record(image_bytes=data, **item_photo_fields(photo, item_id), **where,
                              embedding=evidence.embedding, decoded=evidence.decoded)
        answers.append(photo.model_copy(update={"id": record.id, "recorded_at": record.created_at}))
    item = item.model_copy(update={"photos": answers})
    record = store.record(image_bytes=photos[0], **item_fields(item, item_id), **where, decoded=kept[0].decoded)
    return item.model_copy(update={"id": item_id, "recorded_at": record.created_at})


def item_records(store: EvidenceStore, item_id: str) -> tuple[Record, list[Record]] | None:
    """(the item's record, its photos' records in the order sent), or None for an unknown or unfinished item."""
    # By kind too: only this module writes these kinds, while a screening's external id is the caller's.
    summary, _ = store.list(kind="item", external_id=item_id, limit=1)
    if not summary:
        return None
    photos, _ = store.list(kind="item_photo", external_id=item_id, limit=MAX_PHOTOS)
    return summary[0], sorted(photos, key=lambda r: r.seq)
