"""The evidence log through the API, against SQLite and PostgreSQL: record, list, outcome, link, verify."""

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.auth import new_key
from api.settings import Settings

from conftest import TINY_PHOTO_SETTINGS
from evidence_backends import GPS, jpeg_with_metadata, reencoded


@pytest.fixture
def keys():
    made = {role: new_key(f"{role}-1", role) for role in ("inspector", "screener", "admin")}
    return {role: {"X-API-Key": key} for role, (key, _) in made.items()}, [entry for _, entry in made.values()]


@pytest.fixture
def client(model_path, predictor, keys, database_url, tmp_path):
    settings = Settings(model_path=model_path, api_keys=keys[1], data_dir=tmp_path / "evidence",
                        database_url=database_url, **TINY_PHOTO_SETTINGS)
    with TestClient(create_app(settings, predictor)) as client:  # the session's model, already loaded
        yield client


@pytest.fixture
def photo(known_photos) -> bytes:
    """A real synth photo the model scores, carrying EXIF GPS, as a phone would send it."""
    return jpeg_with_metadata(Image.open(io.BytesIO(known_photos["genuine"][0])))


def inspect(client, keys, data, **fields):
    response = client.post("/v1/inspections", files={"image": ("p.jpg", data, "image/jpeg")}, data=fields,
                           headers=keys[0]["inspector"])
    assert response.status_code == 200, response.text
    return response.json()


def test_an_inspection_is_recorded_with_who_where_and_which_model(client, keys, photo):
    answer = inspect(client, keys, photo, location="NLRTM", case="C-17", note="blue crate")
    record = client.get(f"/v1/inspections/{answer['id']}", headers=keys[0]["inspector"]).json()
    assert record["subject"] == "inspector-1" and (record["location"], record["case"]) == ("NLRTM", "C-17")
    assert record["image"]["sha256"] == answer["image"]["sha256"] and record["model"] == {
        key: answer["model"][key] for key in ("name", "version")}  # `demo` is the served model's, not stored
    assert record["verdict"] == answer["verdict"] and record["score"] == pytest.approx(answer["score"])
    assert record["created_at"] == answer["recorded_at"]
    assert answer["product"] and record["product"] == answer["product"]  # which reference it was compared with


def test_listing_filters_and_pages(client, keys, photo):
    for case in ("A", "A", "B"):
        inspect(client, keys, photo, case=case, location="DEHAM")
    page = client.get("/v1/inspections?case=A&limit=1", headers=keys[0]["screener"]).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = client.get(f"/v1/inspections?case=A&limit=5&cursor={page['next_cursor']}",
                      headers=keys[0]["screener"]).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert rest["items"][0]["seq"] < page["items"][0]["seq"]  # newest first
    assert client.get("/v1/inspections?verdict=maybe", headers=keys[0]["screener"]).status_code == 422


def test_outcomes_are_appended_never_overwritten(client, keys, photo):
    record_id = inspect(client, keys, photo)["id"]
    url = f"/v1/inspections/{record_id}/outcome"
    assert client.post(url, json={"label": "counterfeit", "note": "lab"}, headers=keys[0]["screener"]).status_code == 403
    client.post(url, json={"label": "counterfeit", "note": "lab check"}, headers=keys[0]["inspector"])
    record = client.post(url, json={"label": "genuine", "note": "second lab"}, headers=keys[0]["inspector"]).json()
    assert [o["label"] for o in record["outcomes"]] == ["counterfeit", "genuine"] and record["outcome"] == "genuine"
    bad = client.post(url, json={"label": "fake"}, headers=keys[0]["inspector"])
    assert bad.status_code == 422
    assert client.post("/v1/inspections/nope/outcome", json={"label": "genuine"},
                       headers=keys[0]["inspector"]).status_code == 404


def test_thumbnails_lose_gps_and_originals_are_admin_only(client, keys, photo):
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(0x8825)[2] == GPS[2]  # the upload carries a location
    record_id = inspect(client, keys, photo)["id"]
    thumbnail = client.get(f"/v1/inspections/{record_id}/thumbnail", headers=keys[0]["inspector"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert not Image.open(io.BytesIO(thumbnail.content)).getexif() and b"Exif" not in thumbnail.content
    assert client.get(f"/v1/inspections/{record_id}/original", headers=keys[0]["inspector"]).status_code == 403
    original = client.get(f"/v1/inspections/{record_id}/original", headers=keys[0]["admin"])
    assert original.status_code == 200 and original.content == photo  # exactly as received


def test_a_seizure_is_linked_to_the_listing_showing_the_same_goods(client, keys, photo, known_photos):
    listing = reencoded(photo, transpose=Image.Transpose.ROTATE_90, scale=0.8)  # the seller's copy
    other = known_photos["counterfeit"][0]
    screened = client.post("/v1/screenings", files=[("images", ("l.jpg", listing, "image/jpeg")),
                                                    ("images", ("o.jpg", other, "image/jpeg"))],
                           data={"ids": ["listing-42", "listing-7"]}, headers=keys[0]["screener"]).json()
    assert all(r["record_id"] for r in screened["results"])
    seizure = inspect(client, keys, photo, case="C-9")
    matches = client.get(f"/v1/inspections/{seizure['id']}/similar", headers=keys[0]["inspector"]).json()["items"]
    near = [m for m in matches if m["match"] == "near_duplicate"]
    assert [m["external_id"] for m in near] == ["listing-42"] and near[0]["distance"] <= 12
    assert all(m["id"] != seizure["id"] for m in matches)


def test_verify_endpoint_reports_an_intact_chain(client, keys, photo):
    inspect(client, keys, photo)
    assert client.get("/v1/admin/evidence/verify", headers=keys[0]["inspector"]).status_code == 403
    report = client.get("/v1/admin/evidence/verify", headers=keys[0]["admin"]).json()
    assert report["ok"] and report["checked"] >= 1 and report["first_bad"] is None


def test_store_unavailable_is_503_and_nothing_half_written(client, keys, photo, monkeypatch, tmp_path):
    from evidence_store import StoreUnavailable

    store = client.app.state.evidence
    before = store.list(limit=500)[0]

    def down(*args, **kwargs):
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(store, "record", down)
    response = client.post("/v1/inspections", files={"image": ("p.jpg", photo, "image/jpeg")},
                           headers=keys[0]["inspector"])
    assert response.status_code == 503 and response.json()["error"]["code"] == "evidence_unavailable"
    assert response.headers["Retry-After"] == "5"
    monkeypatch.undo()
    assert store.list(limit=500)[0] == before and store.verify().ok
