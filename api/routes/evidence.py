"""HTTP routes over the evidence store: the inspection log, outcomes, linking, verification.

Every inspection (and screened listing) is recorded by the scoring routes in api/routes/photos.py; these
routes read the log back, append confirmed outcomes and find the same goods elsewhere.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.auth import AdminDep, InspectorDep
from api.deps import SINGLE_VALUED_QUERY, AnyRoleDep, StoreDep
from api.errors import ApiError
from api.schemas import ErrorResponse, PlainText, error_responses
from evidence_store import EvidenceStore, Record, Retired
from evidence_store.heads import head_line
from evidence_store.records import RecordKind
from evidence_store.retention import retired_message
from inference.classes import OutcomeLabel, Verdict

router = APIRouter(tags=["evidence"])


# Record ids are 26 characters (evidence_store.records.new_id); longer ones cannot exist, and the
# database never sees control characters. Anything else that is not an id simply is not found (404).
RecordId = Annotated[PlainText, Path(max_length=64, description="the evidence record's id")]
# Cursors are record sequence numbers: at most 18 digits, so always within a 64-bit database integer.
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{0,18}$", description="`next_cursor` of the previous page")]
# What the routes can answer besides 200 (see api.schemas.ERROR_DESCRIPTIONS).
READ_ERRORS = error_responses(401, 403, 422, 503)
RECORD_ERRORS = error_responses(401, 403, 404, 422, 503)
OUTCOME_ERRORS = error_responses(400, 401, 403, 404, 408, 413, 422, 503)
ADMIN_ERRORS = error_responses(401, 403, 503)
PHOTO_ERRORS = {**RECORD_ERRORS, 410: {"model": ErrorResponse, "description": "The photo was retired: the "
                                       "retention policy deleted the original (the record stays)"}}


class OutcomeIn(BaseModel):
    label: OutcomeLabel = Field(description="what a lab check or an investigation established")
    note: PlainText = Field("", max_length=2000, examples=["lab report 2025-118: counterfeit stitching"])


def record_json(record: Record) -> dict:
    """A stored record as clients see it (the same shape as an inspection answer, plus the log's fields)."""
    return {
        "id": record.id, "seq": record.seq, "created_at": record.created_at, "kind": record.kind,
        "external_id": record.external_id, "subject": record.subject, "location": record.location,
        "case": record.case, "note": record.note, "verdict": record.verdict, "score": record.score,
        "product": record.product,
        "thresholds": record.thresholds, "model": {"name": record.model_name, "version": record.model_version},
        "image": {"sha256": record.image_sha256, "width": record.image_width, "height": record.image_height},
        "quality": record.quality, "outcome": record.outcome, "record_hash": record.record_hash,
        "retired_at": record.retired_at,
        "outcomes": [{"label": o.label, "note": o.note, "subject": o.subject, "created_at": o.created_at}
                     for o in record.outcomes],
    }


def _get(store: EvidenceStore, record_id: str) -> Record:
    record = store.get(record_id)
    if record is None:
        raise ApiError(404, "not_found", f"No inspection {record_id!r} in the evidence log.")
    return record


@router.get("/v1/inspections", responses=READ_ERRORS, dependencies=SINGLE_VALUED_QUERY)
def list_inspections(
    principal: AnyRoleDep, store: StoreDep,
    since: Annotated[PlainText | None, Query(max_length=64, description="UTC ISO time, inclusive")] = None,
    until: Annotated[PlainText | None, Query(max_length=64, description="UTC ISO time, exclusive")] = None,
    location: Annotated[PlainText | None, Query(max_length=200)] = None,
    case: Annotated[PlainText | None, Query(max_length=200)] = None,
    verdict: Verdict | None = None,
    kind: RecordKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: Cursor = None,
) -> dict:
    """The log, newest first; pass `next_cursor` back as `cursor` for the next page. An empty value
    (`?since=&cursor=`) means the filter is not given."""
    try:
        records, next_cursor = store.list(since=since or None, until=until or None, location=location or None,
                                          case=case or None, verdict=verdict, kind=kind, limit=limit,
                                          cursor=cursor or None)
    except (ValueError, OverflowError) as exc:  # OverflowError: a time zone pushes a date past year 1..9999
        raise ApiError(422, "invalid_filter", f"{exc}. Times are ISO 8601, e.g. 2025-01-31T09:30:00Z.") from exc
    return {"items": [record_json(r) for r in records], "next_cursor": next_cursor}


@router.get("/v1/inspections/{record_id}", responses=RECORD_ERRORS)
def get_inspection(record_id: RecordId, principal: AnyRoleDep, store: StoreDep) -> dict:
    return record_json(_get(store, record_id))


@router.post("/v1/inspections/{record_id}/outcome", responses=OUTCOME_ERRORS)
def add_outcome(record_id: RecordId, body: OutcomeIn, principal: InspectorDep, store: StoreDep) -> dict:
    """Record a confirmed outcome; appended to the chain, never overwriting earlier ones."""
    _get(store, record_id)
    return record_json(store.add_outcome(record_id, body.label, body.note, principal.subject))


@router.get("/v1/inspections/{record_id}/similar", responses=RECORD_ERRORS, dependencies=SINGLE_VALUED_QUERY)
def similar(record_id: RecordId, principal: AnyRoleDep, store: StoreDep,
            limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
    """Earlier inspections and screened listings showing the same goods: near-duplicate photos
    (Hamming distance of perceptual hashes) or close embeddings (cosine distance)."""
    _get(store, record_id)
    matches = store.similar(record_id, limit=limit)
    return {"items": [{**record_json(m.record), "distance": m.distance, "match": m.kind} for m in matches]}


def _photo(read, record: Record) -> bytes:
    """read(sha256) of a record's photo; 410 Gone once the retention policy retired it (the record stays)."""
    if record.retired_at is not None:
        raise ApiError(410, "retired", retired_message(f"The original photo of inspection {record.id}",
                                                       record.retired_at))
    try:
        return read(record.image_sha256)
    except Retired as exc:  # retired meanwhile
        raise ApiError(410, "retired", str(exc)) from exc


@router.get("/v1/inspections/{record_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **PHOTO_ERRORS})
async def thumbnail(record_id: RecordId, principal: AnyRoleDep, store: StoreDep) -> Response:
    """The photo for display: at most 320 px, EXIF (GPS included) and other metadata removed. 410 once the
    retention policy has deleted the original it is made from."""
    record = _get(store, record_id)
    data = await run_in_threadpool(_photo, store.thumbnail, record)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/v1/inspections/{record_id}/original", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, **PHOTO_ERRORS})
def original(record_id: RecordId, principal: AdminDep, store: StoreDep) -> Response:
    """The original bytes exactly as received (metadata included): admin only. 410 once the retention
    policy has deleted it."""
    record = _get(store, record_id)
    return Response(_photo(store.original, record), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{record.image_sha256}"'})


@router.get("/v1/admin/evidence/verify", tags=["admin"], responses=ADMIN_ERRORS)
def verify(principal: AdminDep, store: StoreDep) -> dict:
    """Recompute the hash chain and every stored photo's hash; names the first record that was altered."""
    report = store.verify()
    return {"ok": report.ok, "checked": report.checked, "first_bad": report.first_bad, "retired": report.retired,
            "head": {"seq": report.head_seq, "hash": report.head_hash}, "not_covered": report.not_covered}


@router.get("/v1/admin/evidence/head", tags=["admin"], responses=ADMIN_ERRORS)
def evidence_head(principal: AdminDep, store: StoreDep) -> dict:
    """The chain head now, to keep outside the database (a ticket, an email, a timestamp service): later,
    `counterfeit evidence verify --head FILE` checks that the chain still holds it. Unsigned: the signing
    key stays with whoever takes heads offline (`counterfeit evidence head --key`)."""
    return json.loads(head_line(store.head()))
