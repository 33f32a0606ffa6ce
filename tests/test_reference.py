"""The reference recipe: registration to a product's genuine reference, per-location comparison with
the registered genuines, export, and what serving answers for photos of no known product."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw

from evaluation.screen import screen_files
from inference.align import NotRecognised, Reference, align, references_from_json, references_to_json
from inference.layout import list_split
from inference.metadata import ModelFileError
from inference.predictor import Predictor, stacked

from conftest import REFERENCE_SIZE


def photo(path) -> Image.Image:
    return Image.open(path).convert("RGB")


def test_the_model_file_carries_its_products_references(reference_data, reference_run, reference_predictor):
    run, summary = reference_run
    assert not list((reference_data / "train" / "counterfeit").rglob("*.jpg"))  # fitted without any
    meta = reference_predictor.metadata
    assert reference_predictor.aligns and [r.product for r in meta.references] == ["product-a", "product-b"]
    assert meta.public()["products"] == ["product-a", "product-b"]
    assert meta.train_config["recipe"] == "reference" and meta.preprocess.size == REFERENCE_SIZE
    assert all(len(r.points) >= 15 and r.descriptors.shape == (len(r.points), 128) for r in meta.references)
    assert summary["best"]["train_genuines_left_out"] <= 2 and summary["version"] == meta.version
    assert 0 <= meta.thresholds.low <= meta.thresholds.high <= 1


def test_photos_register_to_their_own_product(reference_data, reference_predictor):
    samples = list_split(reference_data, "test")
    products = [r.product for r in reference_predictor.metadata.references]
    found = [products[reference_predictor.prepare(photo(s.path)).product] for s in samples]
    assert np.mean([f == s.product for f, s in zip(found, samples)]) >= 0.9


def test_a_printed_defect_raises_the_score(reference_data, reference_predictor):
    """Behavioural: the same genuine photo with a patch of its print repainted scores higher."""
    genuines = [s for s in list_split(reference_data, "test") if s.label == 0][:4]
    raised = 0
    for sample in genuines:
        clean = photo(sample.path)
        tampered = clean.copy()
        width, height = clean.size
        ImageDraw.Draw(tampered).ellipse((width * 0.45, height * 0.4, width * 0.55, height * 0.55), fill=(20, 160, 60))
        clean_score, tampered_score = (p.score for p in reference_predictor.predict([clean, tampered]))
        raised += tampered_score > clean_score
    assert raised >= 3


def relit(image: Image.Image) -> Image.Image:
    """Another white balance and exposure: the same print under another light."""
    rgb = np.asarray(image, np.float32) * np.array([1.08, 0.97, 0.9]) + 10
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def recoloured(image: Image.Image) -> Image.Image:
    """The package's main ink (the commonest colour in the middle of the photo) printed in another hue."""
    rgb = np.asarray(image).astype(np.int16)
    height, width = rgb.shape[:2]
    middle = rgb[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4].reshape(-1, 3)
    values, counts = np.unique(middle // 16, axis=0, return_counts=True)
    ink = values[counts.argmax()] * 16 + 8
    near = np.abs(rgb - ink).sum(-1) < 60
    border = np.ones_like(near)
    border[height // 6 : -height // 6, width // 6 : -width // 6] = False
    near &= ~border  # not the background around the package
    hsv = np.asarray(image.convert("HSV")).astype(np.int16)
    hsv[..., 0] = np.where(near, (hsv[..., 0] + 18) % 256, hsv[..., 0])  # 18/256 of a turn: 25 degrees
    hsv[..., 2] = np.where(near, hsv[..., 2] * 0.88, hsv[..., 2])
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def test_another_ink_raises_the_colour_score_far_more_than_another_light(reference_data, reference_run,
                                                                          reference_predictor):
    """Behavioural: the colour check fits each photo's own light, so a change of white balance and exposure
    is explained away, while one ink in another hue is not (its peak z^2 grows by e^1 or more)."""
    import torch

    from training.checkpoint import load_checkpoint
    from training.recipes.reference.model import SCORES

    model = load_checkpoint(reference_run[0] / "checkpoint.pt")[0].eval()
    genuines = [s for s in list_split(reference_data, "test") if s.label == 0][:4]
    for sample in genuines:
        clean = photo(sample.path)
        prepared = [reference_predictor.prepare(image) for image in (relit(clean), recoloured(clean))]
        with torch.no_grad():
            raw = model.raw_scores(*map(torch.from_numpy, stacked(prepared)))
        light_score, ink_score = raw[:, SCORES.index("colour")].tolist()
        assert ink_score > light_score + 1, sample.path.name


def test_the_heatmap_points_at_the_defect_on_the_photo_itself(reference_data, reference_predictor):
    """The comparison happens in the product's frame; the heatmap is mapped back onto the photo."""
    sample = next(s for s in list_split(reference_data, "test") if s.label == 0)
    tampered = photo(sample.path)
    box = (140, 100, 172, 124)  # on the package, which fills the middle of these synth photos
    ImageDraw.Draw(tampered).rectangle(box, fill=(230, 20, 200))
    _, png, _ = reference_predictor.explain(reference_predictor.prepare(tampered))
    alpha = np.asarray(Image.open(io.BytesIO(png)))[..., 3].astype(float)
    assert alpha.shape == (240, 320)
    inside = alpha[box[1]:box[3], box[0]:box[2]].mean()
    assert inside > 2 * alpha.mean() and inside > 50


def test_a_photo_of_no_known_product_is_a_retake(reference_predictor, tmp_path):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8))
    with pytest.raises(NotRecognised, match="No known product"):
        reference_predictor.prepare(noise)
    noise.save(tmp_path / "noise.jpg")
    (record,) = screen_files([tmp_path / "noise.jpg"], reference_predictor)
    assert record["verdict"] == "retake" and record["reason"] == "not_recognised" and "score" not in record


def test_screen_record_keeps_a_retake_with_its_reason(reference_run, reference_data, reference_predictor, run_cli,
                                                     tmp_path, monkeypatch):
    from evidence_store import open_store
    from inference.pipeline import decode_and_prepare

    Image.fromarray(np.random.default_rng(2).integers(0, 256, (240, 320, 3), np.uint8)).save(tmp_path / "noise.jpg")
    genuine = next(s.path for s in list_split(reference_data, "test")  # one the quality gate lets through
                   if s.label == 0 and decode_and_prepare(s.path.read_bytes(), reference_predictor)[2] is not None)
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(tmp_path / "evidence"))
    code, out, err = run_cli("screen", tmp_path / "noise.jpg", genuine, "--model", reference_run[0] / "model.onnx",
                             "--record")
    assert code == 0, err
    retake, scored = (json.loads(line) for line in out.splitlines())
    assert retake["verdict"] == "retake" and retake["record_id"] and scored["record_id"]
    store = open_store(None, tmp_path / "evidence")
    try:
        kept, kept_scored = store.get(retake["record_id"]), store.get(scored["record_id"])
    finally:
        store.close()
    assert kept.verdict == "retake" and kept.score is None and kept.quality["reasons"] == ["not_recognised"]
    assert kept.product is None and "score" in scored and kept_scored.product == scored["product"] is not None


def test_the_service_answers_retake_with_the_reason(reference_predictor):
    from api.batching import Batcher
    from api.service import inspect_photo
    from api.settings import Settings

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 320, 3), np.uint8)).save(buffer, "JPEG")
    batcher = Batcher(max_wait_s=0)
    try:
        answer, kept = inspect_photo(buffer.getvalue(), reference_predictor, batcher, Settings())
    finally:
        batcher.close()
    assert answer.verdict == "retake" and answer.score is None and kept.embedding is None
    assert answer.quality.reasons == ["not_recognised"] and "fills most of the frame" in answer.quality.message


def test_evaluate_and_calibrate_use_the_registered_photos(reference_data, reference_run, tmp_path):
    from evaluation.evaluate import evaluate_folder
    from training.calibrate import recalibrate

    run, _ = reference_run
    metrics = evaluate_folder(reference_data / "test-unseen", Predictor(run / "model.onnx"))
    assert metrics["n"] == 8 and metrics["retake_rate"] == 0 and 0 <= metrics["roc_auc"] <= 1
    meta = recalibrate(run / "model.onnx", reference_data / "val", tmp_path / "new.onnx", 0.9)
    assert Predictor(tmp_path / "new.onnx").aligns and meta.references


def test_references_survive_the_model_file_and_corruption_is_refused(reference_run, tmp_path):
    run, _ = reference_run
    proto = onnx.load(run / "model.onnx")
    props = {p.key: p for p in proto.metadata_props}
    references = references_from_json(json.loads(props["references"].value))
    again = references_from_json(references_to_json(references))
    assert all(np.array_equal(a.points, b.points) and np.array_equal(a.descriptors, b.descriptors)
               for a, b in zip(references, again))
    broken = json.loads(props["references"].value)
    broken["counts"][0] += 1
    props["references"].value = json.dumps(broken)
    onnx.save(proto, tmp_path / "broken.onnx")
    with pytest.raises(ModelFileError, match="references"):
        Predictor(tmp_path / "broken.onnx")
    proto.metadata_props.remove(props["references"])  # the product input without references
    onnx.save(proto, tmp_path / "stripped.onnx")
    with pytest.raises(ModelFileError, match="'product'"):
        Predictor(tmp_path / "stripped.onnx")


def test_registration_inverts_a_known_warp(reference_predictor, reference_data):
    """A photo rotated by 10 degrees registers to its product and lands back where the original did."""
    from inference.preprocess import PreprocessSpec

    sample = next(s for s in list_split(reference_data, "val") if s.label == 0)
    spec: PreprocessSpec = reference_predictor.spec
    references: list[Reference] = list(reference_predictor.metadata.references)
    original = photo(sample.path)
    rotated = original.rotate(10, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    (frame_a, found_a), (frame_b, found_b) = align(original, references, spec), align(rotated, references, spec)
    assert found_a.product == found_b.product and found_a.inliers >= 15
    a, b = (np.asarray(f.convert("L"), np.float32)[40:-40, 40:-40] for f in (frame_a, frame_b))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8


def test_reference_recipe_settings_are_checked(reference_data, tmp_path, run_cli):
    from training.config import TrainConfig

    with pytest.raises(ValueError, match="divisible by 16"):
        TrainConfig(image_size=(330, 240))
    with pytest.raises(ValueError, match="Invalid recipe 'magic'"):
        TrainConfig(recipe="magic")
    assert TrainConfig().image_size == (640, 480) and TrainConfig(recipe="classifier").image_size == (320, 240)
    code, _, err = run_cli("train", reference_data, "--out", tmp_path / "r", "--image-size", "330x240")
    assert code == 2 and "divisible by 16" in err


def test_the_model_card_describes_the_reference_recipe(reference_data, reference_run):
    from evaluation.evaluate import evaluate_folder, write_report
    from training.model_card import render

    run, _ = reference_run
    write_report(evaluate_folder(reference_data / "test", Predictor(run / "model.onnx")), run / "report")
    card = render(run)
    assert "Recipe: reference" in card and "`product-a`, `product-b`" in card and "torchvision" not in card


def test_the_fit_is_deterministic(reference_data, reference_run, tmp_path):
    import torch

    from training.config import TrainConfig
    from training.train import fit

    fit(TrainConfig(data=str(reference_data), out=str(tmp_path / "again"), image_size=REFERENCE_SIZE), progress=False)
    first, again = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (reference_run[0], tmp_path / "again"))
    assert first["references"] == again["references"] and first["calibration"] == again["calibration"]
    assert all(torch.equal(first["model"][key], again["model"][key]) for key in first["model"])


def test_classifier_options_are_named_when_the_reference_recipe_ignores_them(reference_data, tmp_path, run_cli,
                                                                              monkeypatch):
    """What `counterfeit train` prints around a fit, and the config it fits: the fit is a stand-in here (the
    reference fit itself is the session's reference_run, which writes model.onnx into its --out)."""
    import training.train

    fitted = []

    def stand_in_fit(config, resume=False, **_):
        fitted.append(config)
        return {"best": {"epoch": 1, "roc_auc": 0.9, "accuracy": 0.8}, "model": f"{config.out}/model.onnx",
                "version": "v1"}

    monkeypatch.setattr(training.train, "fit", stand_in_fit)
    code, _, err = run_cli("train", reference_data, "--out", tmp_path / "r", "--image-size", "320x240",
                           "--epochs", "5", "--lr", "0.01")
    assert code == 0 and "note: --epochs, --lr only apply to --recipe classifier" in err
    assert f"reference model fitted: val ROC-AUC 0.9000, accuracy 0.800; wrote {tmp_path / 'r'}/model.onnx" in err
    (config,) = fitted
    assert config.recipe == "reference" and config.out == str(tmp_path / "r") and config.image_size == REFERENCE_SIZE


def test_products_are_found_by_registration_without_product_folders(reference_data):
    """Photos of several products in one folder (no product sub-folders): each product becomes its own."""
    from inference.align import keypoints
    from inference.layout import Sample
    from training.config import TrainConfig
    from training.recipes.reference.fit import _genuines_by_product, chosen_references

    genuines = [s for s in list_split(reference_data, "train", optional=("counterfeit",)) if s.label == 0]
    by_folder = _genuines_by_product([Sample(s.path, 0, "") for s in genuines], TrainConfig(image_size=REFERENCE_SIZE)
                                     .preprocess_spec(), progress=False)
    chosen = chosen_references({"": [keypoints(frame) for frame in by_folder[""]]})
    assert sorted(chosen) == ["product-1", "product-2"] and {pick.folder for pick in chosen.values()} == {""}
    assert all(len({genuines[i].product for i in pick.members}) == 1 for pick in chosen.values())


def test_export_retries_from_a_run_folder(reference_run, tmp_path, run_cli):
    """A failed export never loses the fit: `counterfeit export RUN` rebuilds RUN/model.onnx from its checkpoint."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(reference_run[0] / "checkpoint.pt", run / "checkpoint.pt")
    code, _, err = run_cli("export", run)
    assert code == 0 and "verified against torch" in err
    assert Predictor(run / "model.onnx").metadata.version == Predictor(reference_run[0] / "model.onnx").metadata.version
    code, _, err = run_cli("export", run / "checkpoint.pt")
    assert code == 2 and "--out" in err


def test_the_heatmap_marks_nothing_on_a_clean_genuine_and_the_defect_on_a_counterfeit():
    """Issue 23: each heatmap was stretched to its own peak, so genuine-1.jpg (score 0.00) was painted as red as
    a fake. Reference heatmaps are in units of a typical genuine's strongest spot: drawn on that scale."""
    from inference.assets import SAMPLES_DIR

    from conftest import DEMO_MODEL

    predictor = Predictor(DEMO_MODEL)
    alpha = {}
    for name in ("genuine-1", "genuine-2", "counterfeit-1", "counterfeit-2"):
        prepared = predictor.prepare(predictor.load((SAMPLES_DIR / f"{name}.jpg").read_bytes()).image)
        _, png, _ = predictor.explain(prepared)
        alpha[name] = np.asarray(Image.open(io.BytesIO(png)).getchannel("A"))
    assert alpha["genuine-1"].max() == 0 and alpha["genuine-2"].max() == 0
    for fake in ("counterfeit-1", "counterfeit-2"):
        assert alpha[fake].max() >= 150 and 0.001 < (alpha[fake] > 50).mean() < 0.5  # marked, and not everywhere


def test_a_relative_heatmap_is_still_stretched_for_a_classifier():
    from inference.predictor import heatmap_png

    flat_low = np.full((4, 4), 0.2, np.float32)
    flat_low[0, 0] = 0.4
    relative = np.asarray(Image.open(io.BytesIO(heatmap_png(flat_low, (8, 8)))).getchannel("A"))
    absolute = np.asarray(Image.open(io.BytesIO(heatmap_png(flat_low, (8, 8), absolute=True))).getchannel("A"))
    assert relative.max() > 0 and absolute.max() == 0  # below a typical genuine's peak: nothing to mark
