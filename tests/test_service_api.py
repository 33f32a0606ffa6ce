"""The service as operators run it: screenings, keys and roles, reload, metrics, request ids, retakes."""

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from api.app import create_app
from api.auth import new_key
from api.settings import Settings

from conftest import REFERENCE_SIZE, TINY_PHOTO_SETTINGS


@pytest.fixture
def keys():
    made = {role: new_key(f"{role}-1", role) for role in ("inspector", "screener", "admin")}
    return {role: key for role, (key, _) in made.items()}, [entry for _, entry in made.values()]


@pytest.fixture
def client(model_dir, predictor, keys, tmp_path):
    settings = Settings(model_path=model_dir / "model.onnx", api_keys=keys[1], data_dir=tmp_path / "evidence",
                        **TINY_PHOTO_SETTINGS)
    with TestClient(create_app(settings, predictor)) as client:  # the session's model, already loaded
        yield client


def as_role(keys, role):
    return {"X-API-Key": keys[0][role]}


def test_screening_scores_each_image_in_order_with_its_own_errors(client, keys, known_photos):
    files = [("images", ("a.jpg", known_photos["genuine"][0], "image/jpeg")),
             ("images", ("b.jpg", b"not an image", "image/jpeg")),
             ("images", ("c.jpg", known_photos["counterfeit"][0], "image/jpeg"))]
    response = client.post("/v1/screenings", files=files, data={"ids": ["L-1", "L-2", "L-3"]},
                           headers=as_role(keys, "screener"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2] and [r["id"] for r in results] == ["L-1", "L-2", "L-3"]
    assert results[1]["error"]["code"] == "unsupported_format" and results[1]["score"] is None
    assert all(r["verdict"] in {"genuine", "counterfeit", "inconclusive"} for r in (results[0], results[2]))


def test_screening_limits(client, keys, known_photos):
    photo = ("images", ("a.jpg", known_photos["genuine"][0], "image/jpeg"))
    too_many = client.post("/v1/screenings", files=[photo] * 65, headers=as_role(keys, "screener"))
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_images"
    mismatch = client.post("/v1/screenings", files=[photo] * 2, data={"ids": ["only-one"]},
                           headers=as_role(keys, "screener"))
    assert mismatch.status_code == 422 and mismatch.json()["error"]["code"] == "ids_mismatch"


def test_roles(client, keys, known_photos):
    photo = {"image": ("a.jpg", known_photos["genuine"][0], "image/jpeg")}
    assert client.post("/v1/inspections", files=photo).status_code == 401
    assert client.post("/v1/inspections", files=photo, headers={"X-API-Key": "guess"}).status_code == 401
    assert client.post("/v1/inspections", files=photo, headers=as_role(keys, "screener")).status_code == 403
    assert client.post("/v1/inspections", files=photo, headers=as_role(keys, "inspector")).status_code == 200
    assert client.post("/v1/inspections", files=photo, headers=as_role(keys, "admin")).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/v1/model", headers=as_role(keys, "screener")).status_code == 200


def test_reload_swaps_the_model_and_refuses_broken_files(client, keys, model_dir, known_photos, reference_data):
    admin = as_role(keys, "admin")
    old_version = client.get("/v1/model", headers=admin).json()["version"]
    (model_dir / "broken.onnx").write_bytes((model_dir / "model.onnx").read_bytes()[:5000])  # truncated
    refused = client.post("/v1/admin/model", json={"path": "broken.onnx"}, headers=admin)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_model"
    escape = client.post("/v1/admin/model", json={"path": "../../etc/passwd"}, headers=admin)
    assert escape.status_code == 422 and "outside the model directory" in escape.json()["error"]["message"]
    assert client.post("/v1/admin/model", json={"path": "model.onnx"},
                       headers=as_role(keys, "inspector")).status_code == 403
    photo = {"image": ("a.jpg", known_photos["genuine"][0], "image/jpeg")}
    assert client.post("/v1/inspections", files=photo, headers=admin).json()["model"]["version"] == old_version
    recalibrated = _with_other_version(model_dir, reference_data / "val")
    reloaded = client.post("/v1/admin/model", json={"path": recalibrated.name}, headers=admin)
    assert reloaded.status_code == 200 and reloaded.json()["version"] != old_version
    answer = client.post("/v1/inspections", files=photo, headers=admin).json()
    assert answer["model"]["version"] == reloaded.json()["version"]


def _with_other_version(model_dir, labelled):
    """The same model with other thresholds: a new file with a new content version."""
    from training.calibrate import recalibrate

    out = model_dir / "model-v2.onnx"
    recalibrate(model_dir / "model.onnx", labelled, out, target_precision=0.6)
    return out


def test_metrics_and_request_ids(client, keys, known_photos):
    photo = {"image": ("a.jpg", known_photos["genuine"][0], "image/jpeg")}
    answer = client.post("/v1/inspections", files=photo, headers={**as_role(keys, "inspector"),
                                                                  "X-Request-ID": "abc-123"})
    assert answer.headers["X-Request-ID"] == "abc-123"
    assert client.post("/v1/inspections", files={"image": ("x", b"", "image/jpeg")},
                       headers=as_role(keys, "inspector")).headers.get("X-Request-ID")
    text = client.get("/metrics", headers=as_role(keys, "admin")).text
    verdict = answer.json()["verdict"]
    assert f'counterfeit_verdicts_total{{verdict="{verdict}"}} 1.0' in text
    assert "counterfeit_model_info" in text and "counterfeit_batch_size_count" in text
    assert 'route="/v1/inspections"' in text


def test_a_blurred_photo_gets_retake_with_the_reason(client, keys, known_photos):
    photo = Image.open(io.BytesIO(known_photos["genuine"][0])).resize((640, 480)).filter(ImageFilter.GaussianBlur(8))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    answer = client.post("/v1/inspections", files={"image": ("a.jpg", buffer.getvalue(), "image/jpeg")},
                         headers=as_role(keys, "inspector")).json()
    assert answer["verdict"] == "retake" and answer["score"] is None
    assert "blurry" in answer["quality"]["reasons"] and answer["quality"]["message"]


def test_explain_adds_a_heatmap_to_overlay_on_the_photo(client, keys, known_photos):
    answer = client.post("/v1/inspections?explain=true",
                         files={"image": ("a.jpg", known_photos["genuine"][0], "image/jpeg")},
                         headers=as_role(keys, "inspector")).json()
    heatmap = Image.open(io.BytesIO(base64.b64decode(answer["heatmap"])))
    assert heatmap.mode == "RGBA" and heatmap.size == REFERENCE_SIZE  # the model input, as the photo was scored
    plain = client.post("/v1/inspections", files={"image": ("a.jpg", known_photos["genuine"][0], "image/jpeg")},
                        headers=as_role(keys, "inspector")).json()
    assert plain["heatmap"] is None and plain["score"] == pytest.approx(answer["score"], abs=1e-5)


def test_explain_without_a_heatmap_output_is_a_clear_4xx(client, keys, known_photos, monkeypatch):
    from inference.predictor import Predictor

    monkeypatch.setattr(Predictor, "has_heatmap", property(lambda self: False))
    answer = client.post("/v1/inspections?explain=true",
                         files={"image": ("a.jpg", known_photos["genuine"][0], "image/jpeg")},
                         headers=as_role(keys, "inspector"))
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "explain_unavailable"


def test_openapi_documents_keys_and_errors(client):
    schema = client.get("/openapi.json").json()
    assert "APIKeyHeader" in json.dumps(schema["components"]["securitySchemes"])
    responses = schema["paths"]["/v1/inspections"]["post"]["responses"]
    assert {"401", "403", "413", "415", "422"} <= set(responses)
