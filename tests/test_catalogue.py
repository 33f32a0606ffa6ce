"""The catalogue a brand can grow (issue 16): `counterfeit catalogue list/add/remove`, the reference images in
the model file, GET /v1/model's catalogue and the product each answer names.

One removal and one addition of the session's reference model (2 products) are shared by the module:
product-b is removed, then added back from its train genuine photos; product-a must score bit for bit the
same in all three model files."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from inference.align import keypoints
from inference.catalogue import DATA_URI_PREFIX, THUMBNAIL_SIDE, thumbnail_data_uri
from inference.metadata import ModelFileError, ModelMetadata
from inference.metrics import roc_auc
from inference.predictor import Predictor, decode, stacked
from inference.preprocess import letterbox
from training.recipes.reference.model import PER_PRODUCT_BUFFERS

from conftest import TINY_PHOTO_SETTINGS

KEPT, MOVED = "product-a", "product-b"


@pytest.fixture(scope="module")
def catalogue_models(reference_model, reference_data, tmp_path_factory):
    """-> (original, without MOVED, with MOVED added back) model paths, and what the addition reported."""
    from training.catalogue import add_product, remove_product

    folder = tmp_path_factory.mktemp("catalogue")
    removed, readded = folder / "removed.onnx", folder / "readded.onnx"
    remove_product(reference_model, MOVED, removed)
    added = add_product(removed, MOVED, reference_data / "train" / "genuine" / MOVED, readded, line="synth",
                        standardisation="shared")
    return reference_model, removed, readded, added


def prepared_photos(predictor: Predictor, folder) -> list:
    """The folder's photos as this model prepares them (registered), those it recognises."""
    from inference.align import NotRecognised

    found = []
    for path in sorted(folder.glob("*.jpg")):
        try:
            found.append(predictor.prepare(decode(path.read_bytes(), predictor.spec).image))
        except NotRecognised:
            continue
    return found


def scores_of(model, folder, product: str) -> np.ndarray:
    """Scores of the folder's photos registered to `product` under this model."""
    predictor = Predictor(model)
    index = [r.product for r in predictor.metadata.references].index(product)
    prepared = [p for p in prepared_photos(predictor, folder) if p.product == index]
    assert len(prepared) >= 2
    return predictor.scores(*stacked(prepared))


def product_rows(model, product: str) -> dict[str, np.ndarray]:
    """A product's rows of every per-product initializer of a model file."""
    proto = onnx.load(model)
    names = [r.product for r in ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props}).references]
    index = names.index(product)
    return {init.name: numpy_helper.to_array(init)[index] for init in proto.graph.initializer
            if init.name in PER_PRODUCT_BUFFERS}


def test_kept_products_score_bit_for_bit_the_same(catalogue_models, reference_data):
    original, removed, readded, _ = catalogue_models
    for label in ("genuine", "counterfeit"):
        folder = reference_data / "test" / label / KEPT
        before = scores_of(original, folder, KEPT)
        assert np.array_equal(before, scores_of(removed, folder, KEPT))
        assert np.array_equal(before, scores_of(readded, folder, KEPT))


def test_kept_products_statistics_are_identical(catalogue_models):
    original, removed, readded, _ = catalogue_models
    before = product_rows(original, KEPT)
    assert set(before) == set(PER_PRODUCT_BUFFERS)
    for model in (removed, readded):
        after = product_rows(model, KEPT)
        assert set(after) == set(before)
        for name, values in before.items():
            assert np.array_equal(values, after[name]), name


def auc_of(model, reference_data, product: str) -> float:
    """ROC-AUC of the product's val and test photos (neither is seen by `catalogue add`)."""
    scores = {label: np.concatenate([scores_of(model, reference_data / split / label / product, product)
                                     for split in ("val", "test")]) for label in ("genuine", "counterfeit")}
    labels = np.r_[np.zeros(len(scores["genuine"])), np.ones(len(scores["counterfeit"]))]
    return roc_auc(np.r_[scores["genuine"], scores["counterfeit"]], labels)


def test_added_back_product_is_the_trained_one(catalogue_models, reference_data):
    """Added back from the photos it was trained on, with the shared standardisation, a product has the
    statistics and scores training gave it: `add` fits as training fits."""
    original, _, readded, added = catalogue_models
    trained, again = product_rows(original, MOVED), product_rows(readded, MOVED)
    for name, values in trained.items():
        assert np.allclose(values.astype(np.float32), again[name].astype(np.float32), rtol=2e-3, atol=1e-4), name
    for label in ("genuine", "counterfeit"):
        folder = reference_data / "test" / label / MOVED
        assert np.allclose(scores_of(original, folder, MOVED), scores_of(readded, folder, MOVED), atol=1e-3)
    assert added.photos == Predictor(original).metadata.catalogue[MOVED]["photos"]


def test_catalogue_metadata_after_add_and_remove(catalogue_models):
    original, removed, readded, added = catalogue_models
    meta = {path: Predictor(path).metadata for path in (original, removed, readded)}
    assert [r.product for r in meta[removed].references] == [KEPT]
    assert [r.product for r in meta[readded].references] == [KEPT, MOVED]
    assert MOVED not in meta[removed].catalogue and meta[removed].line_of(MOVED) is None
    assert meta[readded].line_of(MOVED) == "synth"
    assert meta[readded].catalogue[MOVED]["photos"] == added.photos
    assert meta[readded].catalogue[KEPT] == meta[original].catalogue[KEPT]
    assert meta[readded].thresholds == meta[original].thresholds
    assert meta[readded].temperature == meta[original].temperature


def test_training_fills_product_lines_and_reference_images(reference_model, reference_data):
    meta = Predictor(reference_model).metadata
    assert meta.product_lines == {KEPT: (KEPT,), MOVED: (MOVED,)}
    for product in (KEPT, MOVED):
        entry = meta.catalogue[product]
        assert 3 <= entry["photos"] <= len(list((reference_data / "train" / "genuine" / product).glob("*.jpg")))
        image = Image.open(io.BytesIO(base64.b64decode(entry["reference_image"][len(DATA_URI_PREFIX):])))
        assert image.format == "JPEG" and max(image.size) == THUMBNAIL_SIDE


def test_artwork_serves_as_the_reference(catalogue_models, reference_data, tmp_path):
    from datatools.synth import make_product_design, render_artwork
    from training.catalogue import add_product

    _, removed, _, _ = catalogue_models
    artwork = tmp_path / "artwork.png"
    render_artwork(make_product_design(2, 1)).save(artwork)  # reference_data: seed 2, product index 1 = product-b
    out = tmp_path / "artwork.onnx"
    added = add_product(removed, MOVED, reference_data / "train" / "genuine" / MOVED, out, artwork=artwork,
                        standardisation="shared")  # the own one: test_add_warns_about_few_photos
    assert added.photos >= 3
    frame = letterbox(Image.open(artwork).convert("RGB"), added.metadata.preprocess)
    assert len(added.metadata.references[-1].points) == len(keypoints(frame)[0])  # all the artwork's keypoints
    assert added.metadata.catalogue[MOVED]["reference_image"] == thumbnail_data_uri(frame)
    assert auc_of(out, reference_data, MOVED) > 0.5


# --------------------------------------------------------------------------- the command


def test_list(run_cli, catalogue_models):
    _, _, readded, _ = catalogue_models
    code, out, _ = run_cli("catalogue", "list", readded)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows[MOVED][1:] == ["synth", str(Predictor(readded).metadata.catalogue[MOVED]["photos"]), "yes"]
    assert rows[KEPT][1] == KEPT


def test_list_defaults_to_the_served_model(run_cli, reference_model, monkeypatch):
    """Issue 23: `catalogue list` needed a model path; it reads the served one, as screen and evaluate do."""
    monkeypatch.setenv("COUNTERFEIT_MODEL_PATH", str(reference_model))
    code, out, _ = run_cli("catalogue", "list")
    assert code == 0 and out.startswith(f"{Predictor(reference_model).metadata.name} (version ")


def test_add_refusals(run_cli, catalogue_models, reference_data, tmp_path):
    original, removed, _, _ = catalogue_models
    photos = reference_data / "train" / "genuine" / MOVED
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"x")
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(photos.glob("*.jpg"))[:2]:
        (few / path.name).write_bytes(path.read_bytes())
    not_an_image = tmp_path / "artwork.png"
    not_an_image.write_text("not an image")
    cases = [
        ((original, "--product", KEPT, "--photos", photos, "--out", tmp_path / "a.onnx"), "already has a product"),
        ((removed, "--product", MOVED, "--photos", photos, "--out", taken), "exists"),
        ((removed, "--product", MOVED, "--photos", few, "--out", tmp_path / "b.onnx"), "at least 3"),
        ((removed, "--product", MOVED, "--photos", photos, "--artwork", not_an_image, "--out", tmp_path / "c.onnx"),
         "cannot read the artwork"),
        ((taken, "--product", MOVED, "--photos", photos, "--out", tmp_path / "d.onnx"), "model"),
    ]
    for arguments, message in cases:
        code, out, err = run_cli("catalogue", "add", *arguments)
        assert code == 2, (arguments, err)
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert taken.read_bytes() == b"x" and not list(tmp_path.glob("[abcd].onnx*"))


def test_add_warns_about_few_photos(run_cli, catalogue_models, reference_data, tmp_path):
    from training.catalogue import ENOUGH_PHOTOS

    _, removed, _, _ = catalogue_models
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted((reference_data / "train" / "genuine" / MOVED).glob("*.jpg"))[:4]:
        (few / path.name).write_bytes(path.read_bytes())
    code, out, err = run_cli("catalogue", "add", removed, "--product", MOVED, "--photos", few, "--out",
                             tmp_path / "few.onnx")
    assert code == 0, err
    assert 4 < ENOUGH_PHOTOS and f"fewer than the {ENOUGH_PHOTOS}" in err
    assert "standardised on its own photos" in out and "unchanged" in out and Predictor(tmp_path / "few.onnx").metadata.catalogue[MOVED]["photos"] <= 4


def test_remove_refusals(run_cli, catalogue_models, tmp_path):
    original, removed, _, _ = catalogue_models
    code, _, err = run_cli("catalogue", "remove", original, "--product", "product-z", "--out", tmp_path / "x.onnx")
    assert code == 2 and "no product 'product-z'" in err
    code, _, err = run_cli("catalogue", "remove", removed, "--product", KEPT, "--out", tmp_path / "y.onnx")
    assert code == 2 and "only product" in err
    assert not list(tmp_path.iterdir())
    folder = tmp_path / "existing"
    folder.mkdir()
    code, _, err = run_cli("catalogue", "remove", original, "--product", MOVED, "--out", folder, "--force")
    assert code == 2 and "is a folder" in err and list(tmp_path.iterdir()) == [folder] and not list(folder.iterdir())


# --------------------------------------------------------------------------- the model file and the API


def test_metadata_refuses_a_bad_catalogue(reference_predictor):
    props = reference_predictor.metadata.to_props()
    for catalogue in ({"product-z": {"photos": 3}}, {KEPT: {"reference_image": "javascript:alert(1)"}},
                      {KEPT: {"reference_image": DATA_URI_PREFIX + "A" * 70_000}}, {KEPT: {"photos": -1}}):
        with pytest.raises(ModelFileError):
            ModelMetadata.from_props({**props, "catalogue": json.dumps(catalogue)})


def test_model_route_lists_the_catalogue(model_path, predictor, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(model_path=model_path, data_dir=tmp_path / "evidence", **TINY_PHOTO_SETTINGS), predictor)
    with TestClient(app) as client:
        body = client.get("/v1/model").json()
    assert [entry["product"] for entry in body["catalogue"]] == body["products"] == [KEPT, MOVED]
    for entry in body["catalogue"]:
        assert entry["line"] == entry["product"] and entry["photos"] >= 3
        assert entry["reference_image"].startswith(DATA_URI_PREFIX)


def test_inspection_names_the_product(client_with_photos):
    client, photos = client_with_photos
    for product, data in photos.items():
        answer = client.post("/v1/inspections", files={"image": ("p.jpg", data, "image/jpeg")}).json()
        assert answer["product"] == product, answer
    answer = client.post("/v1/inspections", files={"image": ("p.jpg", noise_jpeg(), "image/jpeg")}).json()
    assert answer["verdict"] == "retake" and answer["product"] is None


@pytest.fixture
def client_with_photos(model_path, predictor, reference_data, tmp_path):
    """A client of the session's model, and one test genuine photo of each product that it scores."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from inference.pipeline import decode_and_prepare

    settings = Settings(model_path=model_path, data_dir=tmp_path / "evidence", **TINY_PHOTO_SETTINGS)
    names, photos = [r.product for r in predictor.metadata.references], {}
    for product in (KEPT, MOVED):
        for path in sorted((reference_data / "test" / "genuine" / product).glob("*.jpg")):
            prepared = decode_and_prepare(path.read_bytes(), predictor, settings.limits, settings.quality_thresholds)[2]
            if prepared is not None and names[prepared.product] == product:
                photos[product] = path.read_bytes()
                break
    assert set(photos) == {KEPT, MOVED}
    app = create_app(settings, predictor)
    with TestClient(app) as client:
        yield client, photos


def noise_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_symlink_planted_beside_the_output_is_never_written_through(reference_model, tmp_path):
    """`catalogue remove --out OUT` with OUT.tmp a symlink to another file: that file is left alone (issue 24)."""
    from training.catalogue import remove_product

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out.onnx"
    (tmp_path / "out.onnx.tmp").symlink_to(victim)
    remove_product(reference_model, MOVED, out)
    assert victim.read_text() == "keep me" and Predictor(out).metadata.references[0].product == KEPT
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == ["out.onnx.tmp"]  # ours are gone


def test_atomic_path_leaves_the_old_file_on_failure(tmp_path):
    from inference.atomic import atomic_path

    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("export failed")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]
