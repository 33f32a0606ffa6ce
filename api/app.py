"""The HTTP API. Routes stay thin: they read the request and call api.service.

Run with `counterfeit serve`; tests build the app with `create_app(settings)` and use
`app.dependency_overrides` for anything they need to replace.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.auth import AdminDep, InspectorDep, Principal, ScreenerDep, require
from api.auth_gate import AuthGateMiddleware
from api.batching import Batcher
from api.body_limit import MULTIPART_OVERHEAD, BodyLimitMiddleware
from api.errors import ApiError, install_error_handlers
from api.evidence_routes import SINGLE_VALUED_QUERY, StoreDep
from api.evidence_routes import router as evidence_router
from api.model_slot import ModelSlot, load_validated, resolve_in
from api.observability import install_observability
from api.schemas import Health, Inspection, ModelReload, PlainText, Screenings, error_responses
from api.service import (
    inspect_photo,
    record_inspection,
    screen_photos,
)
from api.settings import Settings
from api.timeouts import BodyTimeoutMiddleware
from api.web import install_web
from evidence_store import open_store
from inference.metadata import ModelFileError
from inference.predictor import Predictor

log = logging.getLogger("counterfeit.api")

# What each kind of route can answer besides 200 (see api.schemas.ERROR_DESCRIPTIONS).
UPLOAD_ERRORS = error_responses(400, 401, 403, 408, 413, 415, 422, 503)
MODEL_ERRORS = error_responses(401, 403, 503)
RELOAD_ERRORS = error_responses(400, 401, 403, 408, 413, 422)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_predictor(request: Request) -> Predictor:
    predictor = request.app.state.slot.current
    if predictor is None:
        raise ApiError(503, "model_not_loaded", "The model is not loaded yet; retry in a few seconds.")
    return predictor


def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher


SettingsDep = Annotated[Settings, Depends(get_settings)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
AnyRoleDep = Annotated[Principal, Depends(require("inspector", "screener"))]


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes: enough to tell a too-large upload without holding all of it."""
    return upload.file.read(max_bytes + 1)


router = APIRouter()


@router.post("/v1/inspections", response_model=Inspection, responses=UPLOAD_ERRORS, tags=["inspections"],
             dependencies=SINGLE_VALUED_QUERY)
def create_inspection(
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP or HEIC")],
    principal: InspectorDep, predictor: PredictorDep, batcher: BatcherDep, settings: SettingsDep,
    store: StoreDep, request: Request,
    location: Annotated[PlainText | None, Form(max_length=200, description="port or site code")] = None,
    case: Annotated[PlainText | None, Form(max_length=200, description="shipment or case reference")] = None,
    note: Annotated[PlainText | None, Form(max_length=2000)] = None,
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


@router.get("/healthz", response_model=Health, tags=["operations"])
def healthz() -> Health:
    """Alive: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
def readyz(request: Request):
    """Ready: 200 once the model is loaded and the server is not shutting down, else 503."""
    if request.app.state.slot.current is None or request.app.state.draining:
        return JSONResponse(status_code=503, content={"status": "loading"})
    return Health(status="ok")


def install_sighup_reload(app: FastAPI) -> None:
    """SIGHUP reloads the configured model file (e.g. after it was replaced on disk)."""

    def reload_from_disk() -> None:
        settings: Settings = app.state.settings
        try:
            predictor = app.state.slot.reload(settings.model_path, settings.threads)
            app.state.metrics.set_model(predictor.metadata.name, predictor.metadata.version)
        except ModelFileError as exc:
            log.error("SIGHUP reload refused, the old model keeps serving: %s", exc)

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, reload_from_disk))
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no SIGHUP
        pass


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    if app.state.slot.current is None:
        app.state.slot.current = await run_in_threadpool(load_validated, settings.model_path, settings.threads)
    meta = app.state.slot.current.metadata
    app.state.metrics.set_model(meta.name, meta.version)
    url = settings.database_url.get_secret_value() if settings.database_url else None
    app.state.evidence = await run_in_threadpool(open_store, url, settings.data_dir, limits=settings.limits)
    app.state.batcher = Batcher(settings.max_batch, settings.batch_wait_ms / 1000, app.state.metrics.observe_batch)
    install_sighup_reload(app)
    log.info("serving model %s version %s from %s", meta.name, meta.version, settings.model_path)
    yield
    app.state.draining = True
    app.state.batcher.close()
    app.state.evidence.close()


def body_limit(settings: Settings, path: str) -> int:
    """Largest request body for a path, bytes: one photo, or a screening's worth of photos."""
    photos = settings.max_screening_images if path == "/v1/screenings" else 1
    return photos * settings.max_upload_bytes + MULTIPART_OVERHEAD


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The app; the model loads at startup (lifespan) unless a ready `predictor` is handed in."""
    # No docs_url/redoc_url: their pages load Swagger UI and ReDoc from a CDN, blank on an offline site
    # network; api.web serves /docs with local files instead.
    app = FastAPI(title="counterfeit-detector", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Tell genuine products from counterfeits by their photos.")
    app.state.settings = settings or Settings()
    app.state.slot = ModelSlot(predictor)
    app.state.draining = False
    install_error_handlers(app)
    # Each wraps the body's receive(); the first added is called first: key, then size, then time.
    app.add_middleware(AuthGateMiddleware)  # 401/403 at the first read of a body, before any byte of it
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: body_limit(app.state.settings, path))
    app.add_middleware(BodyTimeoutMiddleware, timeout_for=lambda: app.state.settings.body_timeout_seconds)
    install_observability(app, metrics_dependencies=[Depends(require("admin"))],
                          metrics_responses=error_responses(401, 403))
    app.include_router(router)
    app.include_router(evidence_router)
    install_web(app)
    return app
