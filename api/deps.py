"""What routes depend on, as `Annotated` aliases (the FastAPI full-stack template's deps.py): the settings,
the served model, the batcher, the evidence store, and request checks shared by several routes.
Tests replace any of them with `app.dependency_overrides[get_x]`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request, UploadFile

from api.auth import Principal, require
from api.batching import Batcher
from api.errors import ApiError
from api.schemas import PlainText
from api.settings import Settings
from evidence_store import EvidenceStore
from inference.predictor import Predictor


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_predictor(request: Request) -> Predictor:
    predictor = request.app.state.slot.current
    if predictor is None:
        raise ApiError(503, "model_not_loaded", "The model is not loaded yet; retry in a few seconds.")
    return predictor


def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher


def get_store(request: Request) -> EvidenceStore:
    return request.app.state.evidence


SettingsDep = Annotated[Settings, Depends(get_settings)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
# Where and why a photo was taken, as inspections and items take them (form fields; kept in the evidence log).
LocationForm = Annotated[PlainText | None, Form(max_length=200, description="port or site code")]
CaseForm = Annotated[PlainText | None, Form(max_length=200, description="shipment or case reference")]
NoteForm = Annotated[PlainText | None, Form(max_length=2000)]
StoreDep = Annotated[EvidenceStore, Depends(get_store)]
AnyRoleDep = Annotated[Principal, Depends(require("inspector", "screener"))]


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes: enough to tell a too-large upload without holding all of it."""
    return upload.file.read(max_bytes + 1)


def refuse_repeated_query(request: Request) -> None:
    """422 for a query parameter given twice (?case=A&case=B): one value would silently win, and a
    search filtered by only one of them looks like an answer to both."""
    params = request.query_params
    repeated = sorted(name for name in params.keys() if len(params.getlist(name)) > 1)
    if repeated:
        raise ApiError(422, "invalid_request", f"Query parameter `{repeated[0]}` given "
                       f"{len(params.getlist(repeated[0]))} times: send each at most once.")


# For routes with query parameters (all of them declare 422).
SINGLE_VALUED_QUERY = [Depends(refuse_repeated_query)]


TEXT_FIELD_BYTES = 16 * 1024  # the longest text field a form may carry: a 2,000-character note in UTF-8, twice


def form_limits(files: int, fields: int) -> dict[str, int]:
    """FastAPI's form limits for a route: the multipart parser refuses (400) a body with more file parts or
    text fields than these, or a longer text field, as soon as it meets one, before the rest is held in
    memory (issue 24: 990 parts of 1 MB to /v1/screenings held 3.4 GB for three clients; 400 text fields of
    1 MB, 360 MB before the 422). Routes allow one part more than they take, to answer it in their own words."""
    return {"max_files": files, "max_fields": fields, "max_part_size": TEXT_FIELD_BYTES}


def single_valued_form(*names: str):
    """A dependency: 422 for any of these form fields given twice (case=A, case=B), as for the query string:
    one value would silently win, and the evidence would keep a value the client did not mean."""

    async def refuse_repeated_form(request: Request) -> None:
        form = await request.form()  # parsed once per request: FastAPI has read it for the route already
        repeated = [name for name in names if len(form.getlist(name)) > 1]
        if repeated:
            raise ApiError(422, "invalid_request", f"Form field `{repeated[0]}` given "
                           f"{len(form.getlist(repeated[0]))} times: send each at most once.")

    return Depends(refuse_repeated_form)
