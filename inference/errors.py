"""One error shape for every 4xx/5xx: {"error": {"code", "message"}}; never a traceback to a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.evidence import OriginalChanged, StoreUnavailable
from inference.images import ImageError

log = logging.getLogger("counterfeit.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def describe_validation(exc: RequestValidationError) -> str:
    """Pydantic's error list -> one sentence naming each bad field and what it needs."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        if error.get("type") == "missing":
            parts.append(f"missing field `{where}`")
        else:
            parts.append(f"`{where}`: {error.get('msg', 'invalid')}")
    hint = " Send the photo as multipart/form-data in the field `image`, e.g. curl -F image=@photo.jpg URL."
    return "Invalid request: " + "; ".join(parts) + "." + (hint if "image" in " ".join(parts) else "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(ImageError)
    async def _image_error(_: Request, exc: ImageError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("evidence store unavailable: %s", exc)
        response = error_response(503, "evidence_unavailable", "The evidence store is unavailable (disk full or "
                                  "database down), so nothing was recorded. Retry shortly.")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(OriginalChanged)
    async def _original_changed(_: Request, exc: OriginalChanged) -> JSONResponse:
        log.error("evidence corrupted: %s", exc)
        return error_response(500, "evidence_corrupted", "A stored photo no longer matches its hash; "
                              "run `counterfeit evidence verify`.")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "The server failed to process this request; it was logged.")
