"""Request ids, one JSON access-log line per request, and Prometheus metrics.

Nothing happens at import: `install_observability(app)` wires a per-app metrics registry and the
middleware into one app, and the CLI's `serve` calls `configure_logging()` for JSON logs on stderr.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import HTTP_METHODS
from inference.classes import VERDICTS

ACCESS_LOGGER = "counterfeit.access"
REQUEST_ID_HEADER = "X-Request-ID"
# Only short, plain ids are echoed: anything else could smuggle newlines or markup into logs.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Requests that match no route share one label, so scanners probing random paths cannot blow up
# the number of time series.
UNMATCHED = "<unmatched>"
# Probes and scrapes arrive every few seconds: log them at DEBUG so they don't drown real traffic.
MAX_LOGGED_PATH = 200
QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


# ---- logging -------------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged too...
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# ...except uvicorn's `color_message`: the message again, with ANSI colour codes for terminals.
_NOT_LOGGED = _RECORD_FIELDS | {"color_message"}


LOGGER_NAMES = {"uvicorn.error": "uvicorn.server"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the record's `extra` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            # uvicorn logs its start and stop lines as "uvicorn.error" (its name for the server's own log),
            # which reads as a failure in a healthy log: shown as "uvicorn.server" (issue 23).
            "logger": LOGGER_NAMES.get(record.name, record.name),
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _NOT_LOGGED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str | int = "INFO") -> None:
    """JSON lines on stderr for every logger that propagates to root. Call once, from the CLI."""
    if isinstance(level, str) and level.upper() not in logging.getLevelNamesMapping():
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    root.setLevel(level.upper() if isinstance(level, str) else level)


# ---- metrics -------------------------------------------------------------------------------------


# HTTP methods that get a metric label of their own; any other (a client may send any token) is "other", so that
# made-up methods cannot grow the series without bound (issue 24).
METHODS = frozenset(HTTP_METHODS)
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """The method as a label value (and in logs): one of METHODS, or OTHER_METHOD."""
    return method if method in METHODS else OTHER_METHOD


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (never the process-global default),
    so several apps in one process (tests, workers) never clash or share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("counterfeit_requests", "HTTP requests answered.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("counterfeit_request_seconds", "Time to answer an HTTP request, seconds.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.verdicts = Counter("counterfeit_verdicts", "Verdicts given, per verdict.", ["verdict"], registry=r)
        self.batch = Histogram("counterfeit_batch_size", "Images scored per model call.",
                               buckets=BATCH_BUCKETS, registry=r)
        self.model = Gauge("counterfeit_model_info", "The served model (value is always 1).",
                           ["name", "version"], registry=r)
        for verdict in VERDICTS:  # export zeros from the start, so rate() works before the first one
            self.verdicts.labels(verdict)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method_label(method), str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def count_verdict(self, verdict: str) -> None:
        if verdict not in VERDICTS:  # label values must stay a small fixed set
            raise ValueError(f"unknown verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
        self.verdicts.labels(verdict).inc()

    def observe_batch(self, size: int) -> None:
        self.batch.observe(size)

    def set_model(self, name: str, version: str) -> None:
        """After a reload only the new model is exported: one series at a time."""
        self.model.clear()
        self.model.labels(name, version).set(1)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format: (body, content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


# ---- middleware ----------------------------------------------------------------------------------


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is sane, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str | None:
    """The matched route's path template (/v1/inspections/{id}), a mounted app's (/static/{path}: the web
    page's files, which were counted as unmatched), or None when nothing matched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if route is not None and path is not None:
        return path or "/"
    mounted = scope.get("root_path", "")[len(scope.get("app_root_path", "")):]
    return f"{mounted}/{{path}}" if mounted and scope.get("endpoint") is not None else None


class ObservabilityMiddleware:
    """Per request: a request id (state + response header), a timing, metrics and one access-log line.

    Plain ASGI rather than BaseHTTPMiddleware: it sees the final status of every response, including
    those the exception handlers produce, without buffering bodies.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, logger_name: str = ACCESS_LOGGER) -> None:
        self.app, self.metrics, self.log = app, metrics, logging.getLogger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status, response_started = 500, False  # 500: what the client gets if the app fails early
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if not response_started:
                await self.answer_unhandled(scope, receive, send_with_id, exc)
            raise  # still reaches the server's error log, as without this middleware
        finally:
            self.record(scope, request_id, status, time.perf_counter() - started)

    async def answer_unhandled(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer an unhandled exception with the app's own 500 handler, through our `send`, so the
        500 carries the request id too (Starlette would otherwise run that handler outside us)."""
        handlers = getattr(scope.get("app"), "exception_handlers", {})
        handler = handlers.get(500) or handlers.get(Exception)
        if handler is None:
            return  # Starlette's own plain 500 follows, without the header
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)

    def record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        template = route_template(scope)
        self.metrics.observe_request(template or UNMATCHED, scope["method"], status, seconds)
        principal = scope.get("state", {}).get("principal")
        client = scope.get("client")
        fields = {
            "request_id": request_id,
            "method": method_label(scope["method"]),
            # A raw path only when no route matched (a 404): cut short, and json.dumps escapes it.
            "path": template or scope["path"][:MAX_LOGGED_PATH],
            "status": status,
            "latency_ms": round(seconds * 1000, 2),
            "subject": getattr(principal, "subject", None),
            "client": client[0] if client else None,
        }
        level = logging.ERROR if status >= 500 else logging.DEBUG if template in QUIET_ROUTES else logging.INFO
        # The message names no raw path, so plain-text log handlers cannot be fed forged lines either.
        self.log.log(level, "%s %s %s", fields["method"], template or UNMATCHED, status, extra=fields)


# ---- wiring --------------------------------------------------------------------------------------


def install_observability(app: FastAPI, metrics_dependencies: Sequence = (), metrics_responses: dict | None = None) -> Metrics:
    """Metrics on app.state.metrics, the middleware, and GET /metrics. Call from create_app.

    `metrics_dependencies`, e.g. [Depends(require("admin"))], protects /metrics; by default it is open
    so a Prometheus server can scrape it without a key.
    """
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)

    def prometheus_metrics() -> Response:
        """Prometheus metrics in the text exposition format."""
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], tags=["operations"],
                      dependencies=list(metrics_dependencies), response_class=Response,
                      responses=metrics_responses)
    return metrics
