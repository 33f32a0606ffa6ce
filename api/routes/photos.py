"""Scoring photos: one inspection (kept as evidence), or a screening of many listing photos."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from api.auth import InspectorDep, ScreenerDep
from api.deps import (
    SINGLE_VALUED_QUERY,
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
from api.schemas import Inspection, Screenings, error_responses
from api.service import inspect_photo, record_inspection, screen_photos

# What an upload can answer besides 200 (see api.schemas.ERROR_DESCRIPTIONS).
UPLOAD_ERRORS = error_responses(400, 401, 403, 408, 413, 415, 422, 503)

router = APIRouter()


@router.post("/v1/inspections", response_model=Inspection, responses=UPLOAD_ERRORS, tags=["inspections"],
             dependencies=[*SINGLE_VALUED_QUERY, single_valued_form("image", "location", "case", "note")],
             form_limits=form_limits(files=2, fields=4))
def create_inspection(
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP or HEIC")],
    principal: InspectorDep, predictor: PredictorDep, batcher: BatcherDep, settings: SettingsDep,
    store: StoreDep, request: Request,
    location: LocationForm = None, case: CaseForm = None, note: NoteForm = None,
    explain: Annotated[bool, Query(description="add a heatmap of where the model looked")] = False,
) -> Inspection:
    """Score one photo and keep it as evidence: verdict (or `retake` for a poor photo), calibrated score,
    thresholds, model version, and the id of its evidence record."""
    data = read_upload(image, settings.max_upload_bytes)
    result, kept = inspect_photo(data, predictor, batcher, settings, explain)
    result = record_inspection(store, data, result, kept, principal.subject, location, case, note)
    request.app.state.metrics.count_verdict(result.verdict)
    return result


@router.post("/v1/screenings", response_model=Screenings, responses=UPLOAD_ERRORS, tags=["screenings"])
def create_screenings(
    images: Annotated[list[UploadFile], File(description="up to max_screening_images photos")],
    principal: ScreenerDep, predictor: PredictorDep, batcher: BatcherDep, settings: SettingsDep,
    store: StoreDep, request: Request,
    ids: Annotated[list[str] | None, Form(description="one id per image (listing or seller id, at most 200 "
                                          "characters, no control characters), in order")] = None,
) -> Screenings:
    """Score many listing photos in one request; each result stands alone, in request order."""
    if len(images) > settings.max_screening_images:
        raise ApiError(413, "too_many_images", f"{len(images)} images sent; at most "
                       f"{settings.max_screening_images} per request. Split the batch.")
    if ids is not None and len(ids) != len(images):
        raise ApiError(422, "ids_mismatch", f"{len(ids)} ids for {len(images)} images: send one id per image.")
    photos = [read_upload(upload, settings.max_upload_bytes) for upload in images]
    # Ids are checked and the decode budget reserved before anything is scored; each batch is recorded
    # as it is scored, and its decoded photos dropped.
    result, _ = screen_photos(photos, ids, predictor, batcher, settings,
                              store=store if settings.record_screenings else None, subject=principal.subject)
    for item in result.results:
        if item.verdict is not None:
            request.app.state.metrics.count_verdict(item.verdict)
    return result
