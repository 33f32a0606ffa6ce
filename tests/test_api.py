"""The HTTP API through a TestClient: answers, metadata, probes, and every bad input as a 4xx."""

import hashlib
import io

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import get_settings
from api.settings import Settings

from conftest import REFERENCE_SIZE, TINY_PHOTO_SETTINGS, image_bytes


@pytest.fixture
def client(model_path, predictor, tmp_path):
    app = create_app(Settings(model_path=model_path, data_dir=tmp_path / "evidence", **TINY_PHOTO_SETTINGS), predictor)
    with TestClient(app) as client:  # runs the lifespan with the session's model, already loaded
        yield client


def post_photo(client, data: bytes, filename="photo.jpg", content_type="image/jpeg"):
    return client.post("/v1/inspections", files={"image": (filename, data, content_type)})


def test_inspection_answers_a_synth_photo(client, known_photos):
    photo = known_photos["counterfeit"][0]
    response = post_photo(client, photo)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] in {"genuine", "counterfeit", "inconclusive"}
    assert 0 <= body["score"] <= 1
    assert body["thresholds"]["low"] <= body["thresholds"]["high"]
    assert body["model"]["version"] == client.get("/v1/model").json()["version"]
    width, height = REFERENCE_SIZE  # the photo's own size, which is also the model's input size here
    assert body["image"] == {"sha256": hashlib.sha256(photo).hexdigest(), "width": width, "height": height}


def test_model_metadata_and_probes(client):
    model = client.get("/v1/model").json()
    assert model["classes"] == ["genuine", "counterfeit"] and model["input"] == {"width": 320, "height": 240}
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_until_a_model_is_loaded(model_path, predictor, tmp_path):
    app = create_app(Settings(model_path=model_path, data_dir=tmp_path))
    client = TestClient(app)  # not entered: lifespan has not run, so nothing is loaded
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    response = post_photo(client, image_bytes())
    assert response.status_code == 503 and response.json()["error"]["code"] == "model_not_loaded"
    with client:  # runs the lifespan: the model loads from the file
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/model").json()["version"] == predictor.metadata.version


@pytest.mark.parametrize(
    "data, status, code",
    [
        (b"", 422, "empty_image"),
        (b"%PDF-1.4 definitely not a photo", 415, "unsupported_format"),
        (image_bytes("JPEG", size=(200, 150))[:5000], 422, "corrupt_image"),
        (image_bytes("TIFF"), 415, "unsupported_format"),
        (image_bytes("BMP"), 415, "unsupported_format"),
    ],
)
def test_bad_images_get_4xx_with_an_error_body(client, data, status, code):
    response = post_photo(client, data)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and len(error["message"]) > 20


def test_missing_field_and_empty_body(client):
    for response in (
        client.post("/v1/inspections"),
        client.post("/v1/inspections", files={"photo": ("a.jpg", image_bytes(), "image/jpeg")}),
        client.post("/v1/inspections", content=b"raw bytes", headers={"content-type": "image/jpeg"}),
    ):
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and "`image`" in error["message"]


def test_too_large_upload_is_413(client, model_path, tmp_path):
    client.app.dependency_overrides[get_settings] = lambda: Settings(
        model_path=model_path, data_dir=tmp_path / "evidence", max_upload_bytes=1000, **TINY_PHOTO_SETTINGS)
    response = post_photo(client, image_bytes("PNG", size=(128, 128)))
    assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large"


def test_unknown_route_and_method_use_the_error_shape(client):
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert client.delete("/v1/inspections").json()["error"]["code"] == "method_not_allowed"


def test_png_and_webp_photos_are_scored(client, known_photos):
    from PIL import Image

    for fmt, mime in (("PNG", "image/png"), ("WEBP", "image/webp")):
        encoded = io.BytesIO()
        Image.open(io.BytesIO(known_photos["genuine"][0])).save(encoded, fmt)
        response = post_photo(client, encoded.getvalue(), f"a.{fmt.lower()}", mime)
        assert response.status_code == 200 and response.json()["score"] is not None, response.text


def test_an_oversized_body_is_refused_before_it_is_parsed(model_path, tmp_path):
    settings = Settings(model_path=model_path, data_dir=tmp_path, max_upload_bytes=10_000, **TINY_PHOTO_SETTINGS)
    with TestClient(create_app(settings)) as client:
        big = image_bytes("PNG", size=(400, 400))  # ~480 kB of noise: far over 10 kB + overhead
        response = post_photo(client, big, "big.png", "image/png")
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunks():  # no Content-Length: the limit is counted as the body streams in
            yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(20):
                yield b"\0" * 10_000

        streamed = client.post("/v1/inspections", content=chunks(),
                               headers={"content-type": "multipart/form-data; boundary=x"})
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "request_too_large"


def test_the_web_pages_files_are_counted_under_their_mount(client):
    """Issue 23: static files were logged and counted as <unmatched>, beside real 404s."""
    from prometheus_client.parser import text_string_to_metric_families

    assert client.get("/static/app.js").status_code == 200
    assert client.get("/nowhere").status_code == 404
    series = {(s.labels["route"], s.labels["status"]): s.value
              for family in text_string_to_metric_families(client.get("/metrics").text)
              for s in family.samples if s.name == "counterfeit_requests_total"}
    assert series[("/static/{path}", "200")] == 1 and series[("<unmatched>", "404")] == 1
