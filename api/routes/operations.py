"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Alive: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request):
    """Ready: 200 once the model is loaded and the server is not shutting down, else 503."""
    if request.app.state.slot.current is None or request.app.state.draining:
        return JSONResponse(status_code=503, content={"status": "loading"})
    return Health(status="ok")
