"""401/403 before anything reads the request body.

FastAPI reads and parses a route's body (a multipart upload is spooled to disk) before it runs the
route's dependencies, so require() alone refuses a caller without a key only after their 40 MB upload
was read. This ASGI middleware checks the X-API-Key header at the first read of the body: by then the
router has picked the route (scope["route"]), and the roles come from that route's own require()
dependencies (their `allowed_roles`), so each route states its roles once. A refused request's body is
never read; with `Expect: 100-continue` (curl, for large uploads) the client never even sends it.
Routes that read no body are checked by require() itself, as before.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import HEADER, check_access
from api.body_limit import RequestRefused, run_refusable
from api.errors import ApiError


def required_roles(dependant) -> list[tuple[str, ...]]:
    """The `allowed_roles` of every require() in a route's dependency tree; each must pass."""
    found, pending = [], [dependant]
    while pending:
        node = pending.pop()
        roles = getattr(node.call, "allowed_roles", None)
        if roles is not None:
            found.append(roles)
        pending.extend(node.dependencies)
    return found


def check_route_access(scope: Scope) -> None:
    """RequestRefused (401/403) unless the caller's key passes every require() of the matched route."""
    dependant = getattr(scope.get("route"), "dependant", None)
    if dependant is None:  # no route matched: the router answers 404/405 without reading the body
        return
    api_key = Headers(scope=scope).get(HEADER)
    keys = scope["app"].state.settings.api_keys
    for allowed in required_roles(dependant):
        try:
            scope.setdefault("state", {})["principal"] = check_access(api_key, keys, allowed)
        except ApiError as exc:
            raise RequestRefused(exc.status, exc.code, exc.message) from None


class AuthGateMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        checked = False

        async def receive_once_allowed() -> Message:
            nonlocal checked
            if not checked:
                checked = True
                check_route_access(scope)
            return await receive()

        await run_refusable(self.app, scope, receive_once_allowed, send)
