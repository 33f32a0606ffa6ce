"""An item, not a photo: several photos of one item, one verdict, kept as evidence under the item's id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile

from api.auth import InspectorDep
from api.deps import (
    AnyRoleDep,
    BatcherDep,
    CaseForm,
    LocationForm,
    NoteForm,
    PredictorDep,
    SettingsDep,
    StoreDep,
    form_limits,
    read_upload,
    single_valued_form,
)
from api.errors import ApiError
from api.items_service import MAX_PHOTOS, MIN_PHOTOS, inspect_item, item_records, record_item
from api.routes.evidence import OUTCOME_ERRORS, RECORD_ERRORS, OutcomeIn, RecordId, record_json
from api.routes.photos import UPLOAD_ERRORS
from api.schemas import Item
from evidence_store import EvidenceStore, Record

router = APIRouter(tags=["items"])


@router.post("/v1/items", response_model=Item, responses=UPLOAD_ERRORS,
             dependencies=[single_valued_form("location", "case", "note")],
             form_limits=form_limits(files=MAX_PHOTOS + 1, fields=4))
def create_item(
    images: Annotated[list[UploadFile], File(description=f"{MIN_PHOTOS} to {MAX_PHOTOS} photos of one item "
                                             "(its sides, its label), JPEG, PNG, WebP or HEIC")],
    principal: InspectorDep, predictor: PredictorDep, batcher: BatcherDep, settings: SettingsDep,
    store: StoreDep, request: Request,
    location: LocationForm = None, case: CaseForm = None, note: NoteForm = None,
) -> Item:
    """Score every photo of one item and give the item one verdict (a calibrated combination of the
    photos' evidence; one side the model calls counterfeit keeps the item counterfeit), or `retake` with
    what to photograph. Each photo and the item's verdict are kept as evidence under the item's id."""
    if len(images) > MAX_PHOTOS:
        raise ApiError(413, "too_many_images", f"{len(images)} photos sent; an item takes at most {MAX_PHOTOS}. "
                       "Send the sides that show the print and the label.")
    if len(images) < MIN_PHOTOS:
        raise ApiError(422, "too_few_images", f"{len(images)} photo sent; an item takes {MIN_PHOTOS} to "
                       f"{MAX_PHOTOS} (front, back, label...). For one photo use POST /v1/inspections.")
    photos = [read_upload(upload, settings.max_upload_bytes) for upload in images]
    item, kept = inspect_item(photos, predictor, batcher, settings)
    item = record_item(store, photos, item, kept, principal.subject, location, case, note)
    for photo in item.photos:  # per photo, as inspections and screenings count: photos judged
        request.app.state.metrics.count_verdict(photo.verdict)
    return item


@router.get("/v1/items/{item_id}", responses=RECORD_ERRORS)
def get_item(item_id: RecordId, principal: AnyRoleDep, store: StoreDep) -> dict:
    """The item as recorded: its verdict, its outcomes and each photo's record."""
    return item_json(*_records(store, item_id))


@router.post("/v1/items/{item_id}/outcome", responses=OUTCOME_ERRORS)
def add_item_outcome(item_id: RecordId, body: OutcomeIn, principal: InspectorDep, store: StoreDep) -> dict:
    """Record what an investigation established about the whole item; appended, earlier outcomes kept."""
    summary, photos = _records(store, item_id)
    summary = store.add_outcome(summary.id, body.label, body.note, principal.subject)
    return item_json(summary, photos)


def _records(store: EvidenceStore, item_id: str) -> tuple[Record, list[Record]]:
    found = item_records(store, item_id)
    if found is None:
        raise ApiError(404, "not_found", f"No item {item_id!r} in the evidence log.")
    return found


def item_json(summary: Record, photos: list[Record]) -> dict:
    """The item as clients see it: the answer's fields, the log's, and each photo's record."""
    fields = record_json(summary)
    quality = summary.quality
    return {"id": summary.external_id, "record_id": summary.id, "created_at": summary.created_at,
            "verdict": summary.verdict, "score": summary.score, "thresholds": summary.thresholds,
            "model": fields["model"], "combination": quality.get("combination"),
            "reason": (quality.get("reasons") or [None])[0], "message": quality.get("message", ""),
            "missing_sides": quality.get("missing_sides", []), "subject": summary.subject,
            "location": summary.location, "case": summary.case, "note": summary.note,
            "outcome": fields["outcome"], "outcomes": fields["outcomes"],
            "photos": [record_json(photo) for photo in photos]}
