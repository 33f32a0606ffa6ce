"""The served model: its metadata, and replacing it without downtime."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import AdminDep
from api.deps import AnyRoleDep, PredictorDep, SettingsDep
from api.errors import ApiError
from api.model_slot import resolve_in
from api.schemas import ModelReload, error_responses
from inference.metadata import ModelFileError

MODEL_ERRORS = error_responses(401, 403, 503)
RELOAD_ERRORS = error_responses(400, 401, 403, 408, 413, 422)

router = APIRouter()


@router.get("/v1/model", tags=["model"], responses=MODEL_ERRORS)
def model_info(principal: AnyRoleDep, predictor: PredictorDep) -> dict:
    """The served model's metadata: classes, input size, thresholds, version, training config."""
    return predictor.metadata.public()


@router.post("/v1/admin/model", tags=["admin"], responses=RELOAD_ERRORS)
async def reload_model(body: ModelReload, principal: AdminDep, request: Request, settings: SettingsDep) -> dict:
    """Replace the served model by a file from the model directory, without downtime.

    The file must load, carry complete metadata and answer a sample image; otherwise the old model
    keeps serving and the answer (422) says why.
    """
    try:
        path = resolve_in(settings.resolved_model_dir, body.path)
        predictor = await run_in_threadpool(request.app.state.slot.reload, path, settings.threads)
    except ModelFileError as exc:
        raise ApiError(422, "invalid_model", str(exc)) from exc
    except OSError as exc:  # e.g. a name within 255 characters but over 255 bytes (ENAMETOOLONG)
        raise ApiError(422, "invalid_model", f"Cannot open {body.path!r} in the model directory: "
                       f"{exc.strerror or exc}.") from exc
    request.app.state.metrics.set_model(predictor.metadata.name, predictor.metadata.version)
    return predictor.metadata.public()
