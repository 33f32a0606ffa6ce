"""API keys with roles: who may call what.

Clients send their key in the `X-API-Key` header. The server stores only SHA-256 hashes of the keys
(Settings.api_keys, env COUNTERFEIT_API_KEYS as a JSON list of ApiKey objects), so a leaked config
file does not leak working keys. Roles: `inspector` (inspections), `screener` (screenings) and
`admin` (model reload, admin endpoints; admin also passes every other check).

With no keys configured the API runs open (every caller is an anonymous admin); `check_bind_allowed`
makes the server refuse that on anything but a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from api.errors import ApiError

Role = Literal["inspector", "screener", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
HEADER = "X-API-Key"

# auto_error=False: a missing key is not always an error (open mode), and when it is we answer in
# the API's own error shape instead of FastAPI's {"detail": ...}. Declared here so OpenAPI (/docs)
# documents the header as a security scheme on every protected route.
api_key_header = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    description="An API key from `counterfeit keys new`; its role decides which endpoints it may call.",
)


class ApiKey(BaseModel):
    """One configured key: who holds it, what it may do, and the SHA-256 of the key itself."""

    subject: str = Field(min_length=1, description="who holds the key, e.g. a team or a device id")
    role: Role
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the key as 64 lowercase hex digits (never the key itself)",
    )


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as routes (and the access log) see it."""

    subject: str
    role: str


ANONYMOUS = Principal("anonymous", "admin")


def hash_key(api_key: str) -> str:
    # Keys are 32 random bytes (secrets.token_urlsafe(32)): nothing to brute-force, so a fast hash
    # is enough; a slow password hash (bcrypt, argon2) would only add latency to every request.
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def new_key(subject: str, role: str) -> tuple[str, ApiKey]:
    """A fresh key: (the plaintext to hand out once, the entry to store in COUNTERFEIT_API_KEYS)."""
    key = secrets.token_urlsafe(32)
    return key, ApiKey(subject=subject, role=role, sha256=hash_key(key))


def key_entry_json(entry: ApiKey) -> str:
    """The stored entry as one JSON object, ready to paste into the COUNTERFEIT_API_KEYS list."""
    return json.dumps(entry.model_dump(), separators=(",", ":"))


def authenticate(api_key: str | None, keys: list[ApiKey]) -> Principal | None:
    """The key's holder, or None. Compares against every entry in constant time, no early exit,
    so response timing does not tell an attacker how close a guess came or which entry matched."""
    if not api_key:
        return None
    digest = hash_key(api_key)
    found: ApiKey | None = None
    for entry in keys:
        if hmac.compare_digest(digest, entry.sha256) and found is None:
            found = entry
    return Principal(found.subject, found.role) if found else None


def _allowed_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise ValueError(f"require() needs roles among {', '.join(ROLES)}; got {', '.join(roles) or 'none'}")
    return tuple(dict.fromkeys((*roles, "admin")))  # admin passes everywhere; keep order, no duplicates


def check_access(api_key: str | None, keys: list[ApiKey], allowed: tuple[str, ...]) -> Principal:
    """The caller if their key has one of the `allowed` roles; ApiError 401 (no or unknown key) or 403."""
    principal = ANONYMOUS if not keys else authenticate(api_key, keys)
    if principal is None:
        raise ApiError(401, "unauthorized", f"Missing or unknown API key: send it in the {HEADER} header.")
    if principal.role not in allowed:
        raise ApiError(
            403, "forbidden",
            f"This key's role is '{principal.role}'; this endpoint needs one of: {', '.join(allowed)}.",
        )
    return principal


def require(*roles: str):
    """A dependency that lets through callers whose key has one of `roles` (or admin).

    The roles also ride on the dependency (`allowed_roles`): api.auth_gate reads them from the
    matched route to refuse a caller before the body is read, so each route states its roles once.
    """
    allowed = _allowed_roles(roles)

    def dependency(request: Request, api_key: Annotated[str | None, Security(api_key_header)]) -> Principal:
        principal = check_access(api_key, request.app.state.settings.api_keys, allowed)
        request.state.principal = principal  # the access log reports the subject
        return principal

    dependency.allowed_roles = allowed
    return dependency


InspectorDep = Annotated[Principal, Depends(require("inspector"))]
ScreenerDep = Annotated[Principal, Depends(require("screener"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything: treat it as public


def check_bind_allowed(host: str, keys: list) -> str | None:
    """None when keys are configured; a warning when running open on loopback; ValueError otherwise."""
    if keys:
        return None
    if not is_loopback(host):
        raise ValueError(
            f"No API keys are configured: refusing to listen on {host}. Configure COUNTERFEIT_API_KEYS "
            "(see `counterfeit keys new`) or listen on 127.0.0.1."
        )
    return "running open: no API keys configured; anyone on this machine can call every endpoint"
