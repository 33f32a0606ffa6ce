"""One error shape for every 4xx/5xx: {"error": {"code", "message"}}; never a traceback to a client."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from evidence_store import OriginalChanged, StoreUnavailable
from inference.images import ImageError

log = logging.getLogger("counterfeit.api")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PHOTO_FIELDS = ("image", "images")  # the upload fields of POST /v1/inspections and /v1/screenings


# FastAPI's 400 ("There was an error parsing the body") comes from a broken multipart or form body.
# What Starlette's multipart parser says when a form exceeds the limits it was given (api.deps.form_limits).
FORM_LIMITS_EXCEEDED = ("Too many files", "Too many fields", "Part exceeded maximum size")
MALFORMED_BODY = ("The request body could not be parsed: send photos as multipart/form-data, e.g. "
                  "curl -F image=@photo.jpg URL, and JSON bodies as application/json.")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})  # e.g. Retry-After on a 503


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
                   close: bool = False) -> JSONResponse:
    """The error body. `close` (and every 500) ends the connection after the answer: the request may be
    half-read, so the next bytes on it could be the rest of its body rather than a new request."""
    response = JSONResponse(status_code=status, content={"error": {"code": code, "message": message}},
                            headers=headers)
    if close or status == 500:
        response.headers["Connection"] = "close"
    return response


def describe_validation(exc: RequestValidationError) -> str:
    """Pydantic's error list -> one sentence naming each bad field and what it needs."""
    parts, photo_field = [], None
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        if error.get("type") == "missing":
            parts.append(f"missing field `{where}`")
        else:
            parts.append(f"`{where}`: {_error_text(error)}")
        photo_field = photo_field or (where if where in PHOTO_FIELDS else None)
    hint = (f" Send photos as multipart/form-data in the field `{photo_field}`, e.g. curl -F "
            f"{photo_field}=@photo.jpg URL.") if photo_field else ""
    return "Invalid request: " + "; ".join(parts) + "." + hint


def _error_text(error: dict) -> str:
    """Pydantic's message, worded for text: its max_length message on an optional field says "items"."""
    if error.get("type") == "too_long" and isinstance(error.get("input"), str):
        return f"at most {error.get('ctx', {}).get('max_length')} characters, got {len(error['input'])}"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def allowed_methods(app, scope) -> list[str]:
    """Every method some route serves at this request's path. Starlette's own 405 names only the first
    matching route's methods, and GET and POST /v1/inspections are two routes. Routes that match any
    method (mounts such as /static) say nothing here; their own Allow header stands."""
    def routes_taking(method: str) -> set[int]:
        return {id(route) for route in app.router.routes
                if route.matches({**scope, "method": method})[0] is Match.FULL}

    method_blind = routes_taking("NO-SUCH-METHOD")
    return [method for method in HTTP_METHODS if routes_taking(method) - method_blind]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

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
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400:  # a form over the route's limits (api.deps.form_limits) says which, else
            message = (f"{message} Send only the fields this route takes (see /docs)."
                       if message.startswith(FORM_LIMITS_EXCEEDED) else MALFORMED_BODY)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope)) or headers.get("Allow", "")
            message = f"{request.method} is not allowed here; use {headers['Allow']}."
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "The server failed to process this request; it was logged.")
