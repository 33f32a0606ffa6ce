"""The API answers as its own OpenAPI spec says: schemathesis generates requests from /openapi.json
(the spec's examples, boundary values, random valid and invalid data) and checks every answer: no 5xx,
only documented status codes, content types, headers and bodies, invalid data refused, 405 with an
Allow header, and no route answering without a key.

Bounded by examples, not by time: EXAMPLES_PER_OPERATION per operation and phase, a fixed seed and
derandomized Hypothesis, so a run does the same work everywhere (about 1,000 requests, well under a
minute on 2 cores). The app is the real one (create_app) with the session's tiny test model and keys
for every role; requests carry the admin key so every route is reached.

Not checked: positive_data_acceptance. A schema cannot say "a decodable photo" or "a model file that
exists", so schema-valid random bytes rightly get 415/422; the spec's own examples and `?since=&cursor=`
are accepted (tests/test_http_hardening.py).
"""

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api.app import create_app
from api.auth import new_key
from api.settings import Settings

from conftest import TINY_PHOTO_SETTINGS, image_bytes

EXAMPLES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
    ignored_auth,
]
CONFIG = {
    "seed": 7,
    # No extra query parameters in "invalid" requests: unknown ones are ignored, as HTTP APIs do, and
    # OpenAPI has no way to forbid them.
    "generation": {"mode": "all", "max-examples": EXAMPLES_PER_OPERATION, "database": "none",
                   "allow-extra-parameters": False},
    "phases": {"stateful": {"enabled": False}},
}
# schemathesis counts `ids: [1419]` as invalid (an integer where a string goes), but in multipart every
# value travels as text, so the server rightly reads "1419": its negative check misfires on lists there.
MULTIPART_LISTS = {"/v1/screenings"}


class AppUnderTest:
    """The ASGI app schemathesis calls: it forwards to the app the `served_app` fixture builds with the
    session's test model. schemathesis loads the spec when this module is imported, before any fixture
    exists (its lazy fixture loader fails on pytest 9), so the spec comes from an app built with default
    settings: the spec does not depend on them, and nothing loads before a lifespan runs."""

    def __init__(self) -> None:
        self.app = create_app(Settings())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":  # the fixture runs the real app's lifespan (model, store) itself
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


APP = AppUnderTest()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=SchemathesisConfig.from_dict(CONFIG))


@pytest.fixture(scope="module")
def keys():
    return {role: new_key(f"{role}-1", role) for role in ("inspector", "screener", "admin")}


@pytest.fixture(scope="module")
def served_app(model_path, keys, tmp_path_factory):
    """(the app, the id of one recorded inspection), with the app's lifespan running."""
    settings_ = Settings(model_path=model_path, api_keys=[entry for _, entry in keys.values()],
                         data_dir=tmp_path_factory.mktemp("evidence"), **TINY_PHOTO_SETTINGS)
    spec_only, app = APP.app, create_app(settings_)
    with TestClient(app) as client:  # runs the lifespan: the model loads, the evidence store opens
        answer = client.post("/v1/inspections", files={"image": ("p.jpg", image_bytes(size=(160, 120)), "image/jpeg")},
                             headers={"X-API-Key": keys["inspector"][0]})
        assert answer.status_code == 200, answer.text
        APP.app = app
        yield app, answer.json()["id"]
    APP.app = spec_only


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_spec(case, served_app, keys):
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    if path is not None and path.mode.is_positive and "record_id" in (case.path_parameters or {}):
        # Random ids all miss (404); a valid one reaches the record's thumbnail, original, outcomes.
        case.path_parameters["record_id"] = served_app[1]
    checks = CHECKS
    if case.operation.path in MULTIPART_LISTS:
        checks = [check for check in CHECKS if check is not negative_data_rejection]
    case.call_and_validate(headers={"X-API-Key": keys["admin"][0]}, checks=checks)
