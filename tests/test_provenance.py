"""What a model file says it was trained and validated on, and what follows from it: GET /v1/model shows
it, every answer's `model.demo` flags a model never validated on real photos, and such a model gives no
advice to act on (no "hold it"). Also: a plain photo with no product is not called blurry."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFilter

from api.app import create_app
from api.settings import Settings
from inference.assets import SAMPLES_DIR
from inference.metadata import ModelMetadata
from inference.pipeline import decode_and_prepare
from inference.predictor import Predictor
from inference.provenance import (
    ORIGIN_FILE,
    demo_notice,
    describe_split,
    provenance,
    read_origin,
    validated_on_real_photos,
    write_origin,
)

from conftest import DEMO_MODEL

DEMO_NOTICE = "Demo model: synthetic photos only, not for real goods."


@pytest.fixture(scope="module")
def demo_predictor() -> Predictor:
    return Predictor(DEMO_MODEL)


@pytest.fixture
def demo_client(demo_predictor, tmp_path):
    settings = Settings(model_path=DEMO_MODEL, data_dir=tmp_path / "evidence")
    with TestClient(create_app(settings, demo_predictor)) as client:
        yield client


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_the_demo_model_says_it_was_validated_on_synthetic_photos(demo_client):
    body = demo_client.get("/v1/model").json()
    assert body["provenance"]["validated_on"]["photos"] == "synthetic"
    assert body["provenance"]["trained_on"]["made_by"] == "counterfeit synth --seed 0"
    assert body["provenance"]["validated_on"]["genuine"] == 80
    assert body["validated_on_real_photos"] is False and body["notice"] == DEMO_NOTICE


def test_a_demo_counterfeit_is_flagged_and_its_item_gives_no_advice_to_hold(demo_client):
    fake = (SAMPLES_DIR / "counterfeit-1.jpg").read_bytes()
    answer = demo_client.post("/v1/inspections", files={"image": ("c.jpg", fake, "image/jpeg")}).json()
    assert answer["verdict"] == "counterfeit" and answer["model"]["demo"] is True
    sides = [("images", (name, (SAMPLES_DIR / name).read_bytes(), "image/jpeg"))
             for name in ("counterfeit-1.jpg", "genuine-2.jpg")]  # both product-b
    item = demo_client.post("/v1/items", files=sides).json()
    assert item["verdict"] == "counterfeit", item
    assert item["message"].startswith("Demo: not evidence") and "hold" not in item["message"]


def test_a_model_validated_on_real_photos_is_no_demo(tmp_path, demo_predictor):
    real = tmp_path / "real"
    for split in ("train", "val"):
        for label in ("genuine", "counterfeit"):
            (real / split / label).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(real / split / label / "a.jpg")
    write_origin(real, photos="real", counterfeits="edited", made_by="counterfeit data real --seed 0")
    record = provenance(real / "train", real / "val")
    assert validated_on_real_photos(record) and demo_notice(record) is None
    meta = replace(demo_predictor.metadata, provenance=record)
    public = ModelMetadata.from_props(meta.to_props()).public()  # survives the file's round trip
    assert public["validated_on_real_photos"] is True and public["notice"] is None
    assert public["provenance"]["validated_on"]["counterfeits"] == "edited"


def test_a_folder_without_origin_holds_collected_photos_and_a_missing_one_is_unknown(tmp_path):
    (tmp_path / "val" / "genuine").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "genuine" / "a.jpg")
    assert describe_split(tmp_path / "val") == {"data": str(tmp_path / "val"), "photos": "real",
                                               "counterfeits": "none", "made_by": "collected by the user",
                                               "genuine": 1, "counterfeit": 0}
    assert not validated_on_real_photos(provenance(tmp_path / "gone", tmp_path / "gone"))
    assert demo_notice({}).startswith("Unknown model")
    (tmp_path / ORIGIN_FILE).write_text("[not an object]")
    assert read_origin(tmp_path)["made_by"] == "collected by the user"


def test_a_plain_photo_is_no_known_product_and_a_blurred_product_is_blurry(demo_predictor):
    _, plain, _ = decode_and_prepare(jpeg(Image.new("RGB", (800, 600), (180, 160, 140))), demo_predictor)
    assert plain.reasons == ("blurry", "not_recognised"), plain.reasons
    assert plain.message.startswith("No known product is recognised in the photo")
    with Image.open(SAMPLES_DIR / "genuine-1.jpg") as photo:
        blurred = jpeg(photo.filter(ImageFilter.GaussianBlur(3)))
    _, quality, prepared = decode_and_prepare(blurred, demo_predictor)
    assert quality.reasons == ("blurry",) and prepared is None
