"""HTTP routes over the evidence store: the inspection log, outcomes, linking, verification.

Every inspection (and screened listing) is recorded by the scoring routes in inference/api.py; these
routes read the log back, append confirmed outcomes and find the same goods elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from inference.auth import AdminDep, InspectorDep, Principal, require
from inference.errors import ApiError
from inference.evidence import EvidenceStore, Record

router = APIRouter(tags=["evidence"])
AnyRoleDep = Annotated[Principal, Depends(require("inspector", "screener"))]


def get_store(request: Request) -> EvidenceStore:
    return request.app.state.evidence


StoreDep = Annotated[EvidenceStore, Depends(get_store)]


class OutcomeIn(BaseModel):
    label: Literal["genuine", "counterfeit", "unknown"] = Field(description="what a lab check or an "
                                                                "investigation established")
    note: str = Field("", max_length=2000)


def record_json(record: Record) -> dict:
    """A stored record as clients see it (the same shape as an inspection answer, plus the log's fields)."""
    return {
        "id": record.id, "seq": record.seq, "created_at": record.created_at, "kind": record.kind,
        "external_id": record.external_id, "subject": record.subject, "location": record.location,
        "case": record.case, "note": record.note, "verdict": record.verdict, "score": record.score,
        "thresholds": record.thresholds, "model": {"name": record.model_name, "version": record.model_version},
        "image": {"sha256": record.image_sha256, "width": record.image_width, "height": record.image_height},
        "quality": record.quality, "outcome": record.outcome, "record_hash": record.record_hash,
        "outcomes": [{"label": o.label, "note": o.note, "subject": o.subject, "created_at": o.created_at}
                     for o in record.outcomes],
    }


def _get(store: EvidenceStore, record_id: str) -> Record:
    record = store.get(record_id)
    if record is None:
        raise ApiError(404, "not_found", f"No inspection {record_id!r} in the evidence log.")
    return record


@router.get("/v1/inspections")
def list_inspections(
    principal: AnyRoleDep, store: StoreDep,
    since: Annotated[str | None, Query(description="UTC ISO time, inclusive")] = None,
    until: Annotated[str | None, Query(description="UTC ISO time, exclusive")] = None,
    location: str | None = None, case: str | None = None,
    verdict: Literal["genuine", "counterfeit", "inconclusive", "retake"] | None = None,
    kind: Literal["inspection", "screening"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None,
) -> dict:
    """The log, newest first; pass `next_cursor` back as `cursor` for the next page."""
    try:
        records, next_cursor = store.list(since=since, until=until, location=location, case=case,
                                          verdict=verdict, kind=kind, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise ApiError(422, "invalid_filter", str(exc)) from exc
    return {"items": [record_json(r) for r in records], "next_cursor": next_cursor}


@router.get("/v1/inspections/{record_id}")
def get_inspection(record_id: str, principal: AnyRoleDep, store: StoreDep) -> dict:
    return record_json(_get(store, record_id))


@router.post("/v1/inspections/{record_id}/outcome")
def add_outcome(record_id: str, body: OutcomeIn, principal: InspectorDep, store: StoreDep) -> dict:
    """Record a confirmed outcome; appended to the chain, never overwriting earlier ones."""
    _get(store, record_id)
    return record_json(store.add_outcome(record_id, body.label, body.note, principal.subject))


@router.get("/v1/inspections/{record_id}/similar")
def similar(record_id: str, principal: AnyRoleDep, store: StoreDep,
            limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
    """Earlier inspections and screened listings showing the same goods: near-duplicate photos
    (Hamming distance of perceptual hashes) or close embeddings (cosine distance)."""
    _get(store, record_id)
    matches = store.similar(record_id, limit=limit)
    return {"items": [{**record_json(m.record), "distance": m.distance, "match": m.kind} for m in matches]}


@router.get("/v1/inspections/{record_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(record_id: str, principal: AnyRoleDep, store: StoreDep) -> Response:
    """The photo for display: at most 320 px, EXIF (GPS included) and other metadata removed."""
    record = _get(store, record_id)
    data = await run_in_threadpool(store.thumbnail, record.image_sha256)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/v1/inspections/{record_id}/original", response_class=Response)
def original(record_id: str, principal: AdminDep, store: StoreDep) -> Response:
    """The original bytes exactly as received (metadata included): admin only."""
    record = _get(store, record_id)
    return Response(store.original(record.image_sha256), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{record.image_sha256}"'})


@router.get("/v1/admin/evidence/verify", tags=["admin"])
def verify(principal: AdminDep, store: StoreDep) -> dict:
    """Recompute the hash chain and every stored photo's hash; names the first record that was altered."""
    report = store.verify()
    return {"ok": report.ok, "checked": report.checked, "first_bad": report.first_bad,
            "head": {"seq": report.head_seq, "hash": report.head_hash}}
