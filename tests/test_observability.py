"""Request ids, JSON access logs and Prometheus metrics on a tiny app."""

import json
import logging
import re
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.auth import InspectorDep, new_key
from api.errors import ApiError, install_error_handlers
from api.observability import JsonFormatter, Metrics, configure_logging, install_observability

KEY, ENTRY = new_key("qa-team", "inspector")


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.settings = SimpleNamespace(api_keys=[ENTRY])
    install_error_handlers(app)
    install_observability(app)

    @app.get("/x")
    def x(request: Request) -> dict:
        return {"request_id": request.state.request_id}

    @app.get("/items/{item_id}")
    def item(item_id: str, who: InspectorDep) -> dict:
        return {"item": item_id}

    @app.get("/gone")
    def gone() -> dict:
        raise ApiError(410, "gone", "This item was withdrawn.")

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("bug")

    return app


@pytest.fixture
def client():
    return TestClient(make_app(), raise_server_exceptions=False)


def access_lines(caplog) -> list[dict]:
    return [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "counterfeit.access"]


def sample(metrics_text: str, metric: str, **labels) -> float | None:
    """The value of one series (exact name and labels) parsed from the text format, or None."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == metric and s.labels == labels:
                return s.value
    return None


def test_sane_request_id_is_echoed_and_available_to_the_route(client):
    response = client.get("/x", headers={"X-Request-ID": "abc-123_DEF.4"})
    assert response.headers["X-Request-ID"] == "abc-123_DEF.4"
    assert response.json() == {"request_id": "abc-123_DEF.4"}


@pytest.mark.parametrize(
    "incoming", ["a" * 200, "has spaces", b"x\nfake log line", b"x\r\nX-Admin: 1", "\\u00e9", "é".encode(), "a;b", ""],
)
def test_insane_request_id_is_replaced(client, incoming):
    response = client.get("/x", headers={"X-Request-ID": incoming})
    request_id = response.headers["X-Request-ID"]
    assert request_id != incoming and re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response.json() == {"request_id": request_id}


def test_a_fresh_request_id_when_none_is_sent(client):
    first, second = client.get("/x").headers["X-Request-ID"], client.get("/x").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


@pytest.mark.parametrize(
    "path, status, code",
    [("/nowhere", 404, "not_found"), ("/gone", 410, "gone"), ("/items/1", 401, "unauthorized"),
     ("/boom", 500, "internal_error")],
)
def test_error_responses_carry_the_request_id(client, path, status, code):
    response = client.get(path, headers={"X-Request-ID": "req-42"})
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert response.headers["X-Request-ID"] == "req-42"


def test_access_log_is_one_json_line_with_the_route_template(client, caplog):
    caplog.set_level(logging.INFO, logger="counterfeit.access")
    client.get("/items/sku-991", headers={"X-API-Key": KEY, "X-Request-ID": "req-7"})
    (line,) = access_lines(caplog)
    assert line["request_id"] == "req-7" and line["method"] == "GET" and line["status"] == 200
    assert line["path"] == "/items/{item_id}" and line["subject"] == "qa-team"
    assert line["client"] == "testclient" and line["level"] == "INFO" and line["ts"].endswith("+00:00")
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert KEY not in caplog.text and "sku-991" not in caplog.text
    assert all(KEY not in json.dumps(entry) for entry in access_lines(caplog))


def test_access_log_of_failures_and_unmatched_paths(client, caplog):
    caplog.set_level(logging.INFO, logger="counterfeit.access")
    client.get("/items/1", headers={"X-API-Key": "wrong-key"})
    client.get("/nowhere/at%0Aall")  # an encoded newline: the server sees a real one
    client.get("/boom")
    denied, unmatched, boom = access_lines(caplog)
    assert denied["status"] == 401 and denied["subject"] is None and "wrong-key" not in caplog.text
    assert unmatched["status"] == 404 and unmatched["path"] == "/nowhere/at\nall"  # escaped by json.dumps
    assert unmatched["message"] == "GET <unmatched> 404"  # plain-text handlers see no raw path
    assert boom["status"] == 500 and boom["level"] == "ERROR"


def test_metrics_count_requests_per_route_template(client):
    client.get("/x")
    client.get("/x")
    client.get("/items/1", headers={"X-API-Key": KEY})
    client.get("/items/2", headers={"X-API-Key": KEY})
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "counterfeit_requests_total", route="/items/{item_id}", method="GET", status="200") == 2
    assert sample(text, "counterfeit_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert sample(text, "counterfeit_request_seconds_count", route="/x") == 2
    assert sample(text, "counterfeit_verdicts_total", verdict="retake") == 0  # exported from the start


def test_made_up_methods_share_one_label(client, caplog):
    """Any token is a valid HTTP method: each must not become a series of its own, nor a long label (issue 24)."""
    from prometheus_client.parser import text_string_to_metric_families

    caplog.set_level(logging.INFO, logger="counterfeit.access")
    for index in range(30):
        client.request(f"FOO{index}", "/x")
    client.request("M" * 2000, "/x")
    text = client.get("/metrics").text
    series = [s for family in text_string_to_metric_families(text) if family.name == "counterfeit_requests"
              for s in family.samples if s.name == "counterfeit_requests_total"]
    methods = {s.labels["method"] for s in series}
    assert methods <= {"GET", "other"} and "M" * 2000 not in text
    assert sum(s.value for s in series if s.labels["method"] == "other") == 31
    assert {line["method"] for line in access_lines(caplog)} <= {"GET", "other"}


def test_verdicts_batches_and_model_info():
    metrics = Metrics()
    for verdict in ("genuine", "counterfeit", "counterfeit"):
        metrics.count_verdict(verdict)
    metrics.observe_batch(1)
    metrics.observe_batch(40)
    metrics.set_model("demo", "v1")
    text = metrics.render()[0].decode()
    assert sample(text, "counterfeit_verdicts_total", verdict="counterfeit") == 2
    assert sample(text, "counterfeit_batch_size_bucket", le="1.0") == 1
    assert sample(text, "counterfeit_batch_size_bucket", le="64.0") == 2
    assert sample(text, "counterfeit_model_info", name="demo", version="v1") == 1
    metrics.set_model("demo", "v2")
    text = metrics.render()[0].decode()
    assert sample(text, "counterfeit_model_info", name="demo", version="v2") == 1
    assert 'version="v1"' not in text
    with pytest.raises(ValueError, match="unknown verdict"):
        metrics.count_verdict("maybe")


def test_two_apps_have_independent_registries():
    first, second = TestClient(make_app()), TestClient(make_app())
    first.get("/x")
    first.app.state.metrics.set_model("demo", "v1")
    assert sample(first.get("/metrics").text, "counterfeit_requests_total",
                  route="/x", method="GET", status="200") == 1
    text = second.get("/metrics").text
    assert sample(text, "counterfeit_requests_total", route="/x", method="GET", status="200") is None
    assert "counterfeit_model_info{" not in text


def test_json_formatter_includes_message_extra_and_exceptions():
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.getLogger("counterfeit.test").makeRecord(
            "counterfeit.test", logging.WARNING, __file__, 1, "loaded %s", ("demo",),
            exc_info=__import__("sys").exc_info(), extra={"model_version": "v1", "path": object()},
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "loaded demo" and line["level"] == "WARNING" and line["logger"] == "counterfeit.test"
    assert line["model_version"] == "v1" and "ValueError: bad" in line["exc"]
    assert "\n" not in JsonFormatter().format(record)


def test_configure_logging_installs_json_on_root_handlers():
    root = logging.getLogger()
    saved = root.handlers[:], [h.formatter for h in root.handlers], root.level
    try:
        configure_logging("debug")
        assert root.level == logging.DEBUG and root.handlers
        assert all(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging("LOUD")
    finally:
        for handler, formatter in zip(saved[0], saved[1]):
            handler.setFormatter(formatter)
        root.handlers[:] = saved[0]
        root.setLevel(saved[2])


def test_uvicorns_healthy_lines_are_not_labelled_error():
    """Issue 23: `Uvicorn running on ...` was logged as logger "uvicorn.error" at level INFO."""
    record = logging.getLogger("uvicorn.error").makeRecord("uvicorn.error", logging.INFO, __file__, 1,
                                                           "Uvicorn running on %s", ("http://127.0.0.1:8000",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "uvicorn.server" and line["level"] == "INFO"
