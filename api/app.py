"""The HTTP API: create_app wires settings, the model slot, middleware, the routes (api/routes/, thin: they
read the request and call api.service) and the web page; lifespan loads the model and opens the store.

Run with `counterfeit serve`; tests build the app with `create_app(settings)` and use
`app.dependency_overrides` for anything they need to replace.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from api.auth import require
from api.auth_gate import AuthGateMiddleware
from api.batching import Batcher
from api.body_limit import MULTIPART_OVERHEAD, BodyLimitMiddleware
from api.deps import form_limits
from api.errors import install_error_handlers
from api.items_service import MAX_PHOTOS as MAX_ITEM_PHOTOS
from api.model_slot import ModelSlot, load_validated
from api.observability import install_observability
from api.routes import ROUTERS
from api.schemas import error_responses
from api.settings import Settings
from api.timeouts import BodyTimeoutMiddleware
from api.web import install_web
from evidence_store import open_store
from inference.metadata import ModelFileError
from inference.predictor import Predictor

log = logging.getLogger("counterfeit.api")


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
    """Largest request body for a path, bytes: one photo, an item's photos, or a screening's worth."""
    photos = {"/v1/screenings": settings.max_screening_images, "/v1/items": MAX_ITEM_PHOTOS}.get(path, 1)
    return photos * settings.max_upload_bytes + MULTIPART_OVERHEAD


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The app; the model loads at startup (lifespan) unless a ready `predictor` is handed in."""
    # No docs_url/redoc_url: their pages load Swagger UI and ReDoc from a CDN, blank on an offline site
    # network; api.web serves /docs with local files instead.
    settings = settings or Settings()
    # Every other route's form (POST /v1/screenings: its images and one id each) within the screening limit.
    screening = settings.max_screening_images + 1
    app = FastAPI(title="counterfeit-detector", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Tell genuine products from counterfeits by their photos.",
                  form_limits=form_limits(files=screening, fields=screening))
    app.state.settings = settings
    app.state.slot = ModelSlot(predictor)
    app.state.draining = False
    install_error_handlers(app)
    # Each wraps the body's receive(); the first added is called first: key, then size, then time.
    app.add_middleware(AuthGateMiddleware)  # 401/403 at the first read of a body, before any byte of it
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: body_limit(app.state.settings, path))
    app.add_middleware(BodyTimeoutMiddleware, timeout_for=lambda: app.state.settings.body_timeout_seconds)
    install_observability(app, metrics_dependencies=[Depends(require("admin"))],
                          metrics_responses=error_responses(401, 403))
    for router in ROUTERS:
        app.include_router(router)
    install_web(app)
    return app
