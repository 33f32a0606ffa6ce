"""Read deadlines for slow clients, at the connection level: uvicorn's h11 protocol plus two timers.

uvicorn closes idle keep-alive connections (timeout_keep_alive) but waits forever for a request head
that trickles in a byte at a time, for a connection that never sends anything, and for the rest of a
body that nobody reads any more (the app already answered, e.g. 401 before the upload). Each such
connection holds a socket and memory, so a few thousand of them (slowloris) starve the server.

- Request head: must be complete within `header_timeout` seconds of the connection opening, or of the
  previous response on a keep-alive connection; a total, so one byte every few seconds does not help.
- Unread body: once the app has answered, the rest of the body is drained, but each chunk must come
  within `body_timeout` seconds of the previous one.

A body the app is still reading is guarded one level up, by api.timeouts.BodyTimeoutMiddleware,
which can still answer 408. Both timers close the connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("counterfeit.server")


class DeadlineH11Protocol(H11Protocol):
    def __init__(self, *args, header_timeout: float, body_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = header_timeout, body_timeout  # seconds
        self._head_deadline: asyncio.TimerHandle | None = None
        self._drain_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(new_data=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_drain_deadline()
        super().connection_lost(exc)

    def _watch(self, new_data: bool = False) -> None:
        """Arm or cancel the timers for what the connection now waits on."""
        if self.transport.is_closing():
            self._cancel_head_deadline()
            self._cancel_drain_deadline()
            return
        if self._waiting_for_head():
            if self._head_deadline is None:  # a total per head: armed once, never pushed back by data
                self._head_deadline = self.loop.call_later(self.header_timeout, self._give_up, "request head")
        else:
            self._cancel_head_deadline()
        if self._draining_unread_body():
            if new_data or self._drain_deadline is None:  # between chunks: each chunk restarts it
                self._cancel_drain_deadline()
                self._drain_deadline = self.loop.call_later(self.body_timeout, self._give_up, "unread body")
        else:
            self._cancel_drain_deadline()

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _draining_unread_body(self) -> bool:
        """The app has answered but the client is still sending the request's body."""
        return (self.conn.their_state is h11.SEND_BODY and self.cycle is not None
                and self.cycle.response_complete)

    def _give_up(self, waiting_for: str) -> None:
        self._head_deadline = self._drain_deadline = None
        if not self.transport.is_closing():
            log.debug("closing a connection from %s: the %s did not arrive in time", self.client, waiting_for)
            self.transport.close()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _cancel_drain_deadline(self) -> None:
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
            self._drain_deadline = None


def deadline_protocol(header_timeout: float, body_timeout: float):
    """The protocol factory for uvicorn.Config(http=...), with these deadlines in seconds."""
    return functools.partial(DeadlineH11Protocol, header_timeout=header_timeout, body_timeout=body_timeout)
