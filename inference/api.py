"""The HTTP API. Routes stay thin: decoding is inference.images, scoring is inference.predictor.

Run with `counterfeit serve`; tests build the app with `create_app(settings)` and override
`get_predictor` / `get_settings` through `app.dependency_overrides`.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse

from inference.errors import ApiError, install_error_handlers
from inference.predictor import Predictor
from inference.schemas import ErrorResponse, Health, Inspection
from inference.settings import Settings

log = logging.getLogger("counterfeit.api")

ERROR_RESPONSES = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        413: "Image too large (bytes or pixels)",
        415: "Not a supported image format (JPEG, PNG, WebP)",
        422: "Empty, truncated or corrupt image, or a missing field",
        503: "Model not loaded yet",
    }.items()
}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_predictor(request: Request) -> Predictor:
    predictor = getattr(request.app.state, "predictor", None)
    if predictor is None:
        raise ApiError(503, "model_not_loaded", "The model is not loaded yet; retry in a few seconds.")
    return predictor


SettingsDep = Annotated[Settings, Depends(get_settings)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
ImageUpload = Annotated[UploadFile, File(description="The photo: JPEG, PNG or WebP")]


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes: enough to tell a too-large upload without holding all of it."""
    return upload.file.read(max_bytes + 1)


def inspect_photo(data: bytes, predictor: Predictor, settings: Settings) -> Inspection:
    loaded = predictor.load(data, settings.limits)
    prediction = predictor.predict([loaded.image])[0]
    meta = predictor.metadata
    return Inspection(
        verdict=prediction.verdict,
        score=prediction.score,
        thresholds={"low": meta.thresholds.low, "high": meta.thresholds.high},
        model={"name": meta.name, "version": meta.version},
        image={"sha256": hashlib.sha256(data).hexdigest(), "width": loaded.width, "height": loaded.height},
    )


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    if getattr(app.state, "predictor", None) is None:
        app.state.predictor = Predictor(settings.model_path, threads=settings.threads)
    meta = app.state.predictor.metadata
    log.info("serving model %s version %s from %s", meta.name, meta.version, settings.model_path)
    yield
    app.state.predictor = None


router = APIRouter()


@router.post("/v1/inspections", response_model=Inspection, responses=ERROR_RESPONSES, tags=["inspections"])
def create_inspection(image: ImageUpload, predictor: PredictorDep, settings: SettingsDep) -> Inspection:
    """Score one photo: verdict, calibrated score, the thresholds used and the model version."""
    return inspect_photo(read_upload(image, settings.max_upload_bytes), predictor, settings)


@router.get("/v1/model", tags=["model"])
def model_info(predictor: PredictorDep) -> dict:
    """The served model's metadata: classes, input size, thresholds, version, training config."""
    return predictor.metadata.public()


@router.get("/healthz", response_model=Health, tags=["operations"])
def healthz() -> Health:
    """Alive: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
def readyz(request: Request):
    """Ready: 200 once the model is loaded, else 503."""
    if getattr(request.app.state, "predictor", None) is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    return Health(status="ok")


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The app; the model loads at startup (lifespan) unless a ready `predictor` is handed in."""
    app = FastAPI(title="counterfeit-detector", version="1", lifespan=lifespan)
    app.state.settings = settings or Settings()
    app.state.predictor = predictor
    install_error_handlers(app)
    app.include_router(router)
    return app
