"""API keys and roles on a tiny app: 401 / 403 / 200, admin everywhere, open mode, bind checks."""

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.auth import (
    AdminDep,
    ApiKey,
    InspectorDep,
    ScreenerDep,
    authenticate,
    check_bind_allowed,
    hash_key,
    key_entry_json,
    new_key,
    require,
)
from api.errors import install_error_handlers

ROUTES = {"/inspect": "inspector", "/screen": "screener", "/admin": "admin"}


def make_app(api_keys: list[ApiKey]) -> FastAPI:
    app = FastAPI()
    app.state.settings = SimpleNamespace(api_keys=api_keys)
    install_error_handlers(app)

    @app.get("/inspect")
    def inspect(who: InspectorDep) -> dict:
        return {"subject": who.subject, "role": who.role}

    @app.get("/screen")
    def screen(who: ScreenerDep) -> dict:
        return {"subject": who.subject, "role": who.role}

    @app.get("/admin")
    def admin(who: AdminDep) -> dict:
        return {"subject": who.subject, "role": who.role}

    return app


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[str, ApiKey]]:
    return {role: new_key(f"{role}-team", role) for role in ("inspector", "screener", "admin")}


@pytest.fixture(scope="module")
def client(keys):
    return TestClient(make_app([entry for _, entry in keys.values()]))


def call(client, path, key=None):
    return client.get(path, headers={"X-API-Key": key} if key is not None else {})


@pytest.mark.parametrize("key", [None, "", "not-a-key", "x" * 43])
def test_missing_or_unknown_key_is_401(client, key):
    response = call(client, "/inspect", key)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and "X-API-Key" in error["message"]


def test_wrong_role_is_403_naming_the_roles_needed(client, keys):
    response = call(client, "/inspect", keys["screener"][0])
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "forbidden",
        "message": "This key's role is 'screener'; this endpoint needs one of: inspector, admin.",
    }
    assert call(client, "/admin", keys["inspector"][0]).status_code == 403
    assert call(client, "/screen", keys["inspector"][0]).status_code == 403


@pytest.mark.parametrize("path, role", ROUTES.items())
def test_right_role_passes(client, keys, path, role):
    response = call(client, path, keys[role][0])
    assert response.status_code == 200
    assert response.json() == {"subject": f"{role}-team", "role": role}


@pytest.mark.parametrize("path", ROUTES)
def test_admin_passes_everywhere(client, keys, path):
    response = call(client, path, keys["admin"][0])
    assert response.status_code == 200 and response.json()["subject"] == "admin-team"


def test_open_mode_without_keys_lets_everyone_in_as_anonymous_admin():
    client = TestClient(make_app([]))
    for path in ROUTES:
        response = call(client, path)
        assert response.status_code == 200
        assert response.json() == {"subject": "anonymous", "role": "admin"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", ""])
def test_binding_beyond_loopback_without_keys_is_refused(host):
    with pytest.raises(ValueError, match="No API keys are configured.*COUNTERFEIT_API_KEYS"):
        check_bind_allowed(host, [])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_without_keys_runs_open_with_a_warning(host):
    assert "running open" in check_bind_allowed(host, [])


def test_with_keys_any_address_is_fine(keys):
    entries = [entry for _, entry in keys.values()]
    assert check_bind_allowed("0.0.0.0", entries) is None
    assert check_bind_allowed("127.0.0.1", entries) is None


def test_new_key_round_trip_stores_no_plaintext():
    key, entry = new_key("line-3 scanner", "screener")
    assert len(key) >= 43 and entry.sha256 == hash_key(key)
    stored = key_entry_json(entry)
    assert key not in stored
    assert ApiKey.model_validate_json(stored) == entry  # what is pasted into the env var parses back
    other = new_key("someone else", "inspector")[1]
    principal = authenticate(key, [other, entry])
    assert principal is not None and (principal.subject, principal.role) == ("line-3 scanner", "screener")
    assert authenticate(key + "x", [other, entry]) is None
    assert authenticate(None, [entry]) is None


@pytest.mark.parametrize(
    "sha256", ["", "abc", "g" * 64, "A" * 64, "a" * 63, "a" * 65, "a" * 63 + "\n"],
)
def test_bad_hashes_are_rejected(sha256):
    with pytest.raises(ValidationError):
        ApiKey(subject="x", role="admin", sha256=sha256)


def test_unknown_role_is_rejected():
    with pytest.raises(ValidationError):
        ApiKey(subject="x", role="root", sha256="a" * 64)
    with pytest.raises(ValueError, match="roles among"):
        require("root")
    with pytest.raises(ValueError):
        new_key("x", "superuser")


def test_openapi_documents_the_api_key_header(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["APIKeyHeader"]["description"],
    }
    for path in ROUTES:
        assert schema["paths"][path]["get"]["security"] == [{"APIKeyHeader": []}]
