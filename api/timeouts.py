"""408 for a request body that stalls while the app reads it.

uvicorn waits as long as a client likes between two chunks of a body; a client that opens an upload
and then sends nothing holds a worker's request, its spooled file and a socket for good. This ASGI
middleware gives each read of the body `timeout_for()` seconds: longer, and the client gets 408 and
the connection is closed (the rest of the body would never be read). Only the body: once it is
complete, reads pass through untouched (a streaming response listens for the disconnect on them).

The request head, and a body the app no longer reads, are guarded at the connection level by
api.read_deadlines (the app never sees a request whose head is incomplete).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.body_limit import RequestRefused, run_refusable


def stalled(seconds: float) -> RequestRefused:
    return RequestRefused(408, "request_timeout", f"The request body stalled for more than {seconds:g} s; "
                          "the connection is closed. Send the request again on a steadier connection.", close=True)


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_for: Callable[[], float]) -> None:
        self.app, self.timeout_for = app, timeout_for  # timeout_for() -> seconds allowed between two chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = self.timeout_for()
        body_complete = False

        async def receive_in_time() -> Message:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), seconds)
            except asyncio.TimeoutError:
                raise stalled(seconds) from None
            body_complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await run_refusable(self.app, scope, receive_in_time, send)
