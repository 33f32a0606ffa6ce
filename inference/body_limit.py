"""Refuse oversized request bodies before they are parsed (413), not after they fill the disk.

Multipart parsing spools uploads to temporary files before a route runs, so a per-file check in the
route comes too late for a 10 GB upload. This ASGI middleware answers 413 from the Content-Length
header at once, and counts the bytes of bodies sent without one (chunked), stopping at the limit.
"""

from __future__ import annotations

import json
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and small form fields, bytes


class BodyTooLarge(Exception):
    pass


def _error_body(limit: int) -> bytes:
    message = f"The request body is larger than {limit:,} bytes. Send a smaller photo or fewer photos."
    return json.dumps({"error": {"code": "request_too_large", "message": message}}).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app, self.limit_for = app, limit_for  # limit_for(path) -> the largest body, bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, limit)
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app on a receive that stops at `limit` bytes; whatever the app then answers (the
        parser's error, usually a 400), the client gets the 413 that says why."""
        state = {"seen": 0, "exceeded": False, "answered": False}

        async def counting_receive() -> Message:
            message = await receive()
            state["seen"] += len(message.get("body", b""))
            if state["seen"] > limit:
                state["exceeded"] = True
                raise BodyTooLarge
            return message

        async def replacing_send(message: Message) -> None:
            if not state["exceeded"]:
                await send(message)
            elif not state["answered"]:
                state["answered"] = True
                await _send_413(send, limit)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except BodyTooLarge:
            if not state["answered"]:
                await _send_413(send, limit)


async def _send_413(send: Send, limit: int) -> None:
    body = _error_body(limit)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
