"""Refuse oversized request bodies before they are parsed (413), not after they fill the disk.

Multipart parsing spools uploads to temporary files before a route runs, so a per-file check in the
route comes too late for a 10 GB upload. This ASGI middleware answers 413 from the Content-Length
header before the first byte is read, and counts the bytes of bodies sent without one (chunked),
stopping at the limit.

`RequestRefused` and `run_refusable` are the shared mechanism for refusing a request while its body
streams in (api.timeouts uses them for 408 too).
"""

from __future__ import annotations

from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and small form fields, bytes


class RequestRefused(Exception):
    """Raised from a wrapped receive(): the client gets this answer instead of the app's."""

    def __init__(self, status: int, code: str, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.close = status, code, message, close

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(self.status, self.code, self.message, close=self.close)(scope, receive, send)


async def run_refusable(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the app on `receive`, which may raise RequestRefused. The app then fails or answers the aborted
    read its own way (the form parser's 400, usually); either way the client gets the refusal, which says why."""
    state: dict = {"refusal": None, "answered": False}

    async def watched_receive() -> Message:
        try:
            return await receive()
        except RequestRefused as refusal:
            state["refusal"] = refusal
            raise

    async def replacing_send(message: Message) -> None:
        if state["refusal"] is None:
            await send(message)
        elif not state["answered"]:
            state["answered"] = True
            await state["refusal"].answer(scope, receive, send)

    try:
        await app(scope, watched_receive, replacing_send)
    except Exception:
        if state["refusal"] is None:
            raise
    if state["refusal"] is not None and not state["answered"]:
        state["answered"] = True
        await state["refusal"].answer(scope, receive, send)


def too_large(limit: int) -> RequestRefused:
    message = f"The request body is larger than {limit:,} bytes. Send a smaller photo or fewer photos."
    return RequestRefused(413, "request_too_large", message)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app, self.limit_for = app, limit_for  # limit_for(path) -> the largest body, bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        received = 0

        async def counting_receive() -> Message:
            # Checked at the first read, not on arrival: the route's key check (api.auth_gate) comes
            # first, so a caller without a key gets 401, and no byte of the body is read either way.
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise too_large(limit)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # a body sent without Content-Length (chunked)
                raise too_large(limit)
            return message

        await run_refusable(self.app, scope, counting_receive, send)
