"""The comparator recipe: products enrolled (not trained) into the comparator shipped with the package, the
head's training on photo pairs, export, and what it answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inference.layout import DataError, list_split
from inference.predictor import Predictor

from conftest import REFERENCE_SIZE


@pytest.fixture(scope="session")
def comparator_run(reference_data, tmp_path_factory):
    """The comparator recipe fitted on reference_data (2 synthetic products) with the shipped head."""
    from training.config import TrainConfig
    from training.train import fit

    run = tmp_path_factory.mktemp("runs") / "comparator"
    config = TrainConfig(data=str(reference_data), out=str(run), recipe="comparator", image_size=REFERENCE_SIZE)
    return run, fit(config, progress=False)


@pytest.fixture(scope="session")
def comparator_predictor(comparator_run):
    return Predictor(comparator_run[0] / "model.onnx")


def photo(path) -> Image.Image:
    return Image.open(path).convert("RGB")


def test_products_are_enrolled_into_the_shipped_head(reference_data, comparator_run, comparator_predictor):
    run, summary = comparator_run
    meta = comparator_predictor.metadata
    assert meta.train_config["recipe"] == "comparator" and comparator_predictor.aligns
    assert [r.product for r in meta.references] == ["product-a", "product-b"]
    head = meta.metrics["comparator_head"]  # where the head came from travels in the model file
    assert head["pairs"] > 1000 and set(head["kinds"]) == {"hue", "lightness", "reprint"}
    assert summary["version"] == meta.version and 0 <= meta.thresholds.low <= meta.thresholds.high <= 1


def test_a_recoloured_print_raises_the_hue_evidence(reference_data, comparator_run, comparator_predictor):
    """Behavioural: the same genuine photo with one ink area turned to another hue gets more counterfeit
    evidence from the head's hue expert (before the calibration fitted on this tiny synthetic val)."""
    from training.checkpoint import load_checkpoint
    from training.recipes.comparator.model import EXPERTS

    model, _, _ = load_checkpoint(comparator_run[0] / "checkpoint.pt")
    genuines = [s for s in list_split(reference_data, "test") if s.label == 0][:6]
    raised = 0
    for sample in genuines:
        clean = photo(sample.path)
        pixels = np.asarray(clean).astype(np.int16)
        turned = pixels[..., [2, 0, 1]]  # every ink's hue turned by a third of the circle
        width, height = clean.size
        box = (slice(height // 4, 3 * height // 4), slice(width // 4, 3 * width // 4))
        tampered = pixels.copy()
        tampered[box] = turned[box]
        evidence = []
        for image in (clean, Image.fromarray(tampered.astype(np.uint8))):
            prepared = comparator_predictor.prepare(image)
            with torch.no_grad():
                inputs, _ = model.head_input(torch.from_numpy(prepared.array[None]), torch.tensor([prepared.product]))
                evidence.append(float(model.head.experts(inputs)[0, list(EXPERTS).index("hue")]))
        raised += evidence[1] > evidence[0] + 2  # logits
    assert len(genuines) >= 4 and raised == len(genuines)


def test_calibration_never_inverts_the_evidence():
    """A val split on which more evidence goes with genuines gets no separation, not an inverted score."""
    from training.recipes.comparator.model import ComparatorModel
    from training.recipes.reference.fit import calibrate_score

    model = ComparatorModel(1, (64, 64), (0.5,) * 3, (0.5,) * 3, pretrained=False)
    score = np.array([3.0, 2.5, 2.0, 0.1, 0.2, 0.3])
    calibration, _ = calibrate_score(model, score, np.array([0, 0, 0, 1, 1, 1]), 0.99)
    assert float(model.scale) == 0.0 and calibration["warnings"]


def test_the_heatmap_is_in_units_of_what_genuines_show(reference_data, comparator_run):
    """A genuine's strongest cell is about 1 (the enrolled genuines' own typical peak), not stretched to
    its own maximum; a repainted area stands out beyond it."""
    from training.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(comparator_run[0] / "checkpoint.pt")
    predictor = Predictor(comparator_run[0] / "model.onnx")
    sample = [s for s in list_split(reference_data, "test") if s.label == 0][0]
    clean = photo(sample.path)
    tampered = clean.copy()
    width, height = clean.size
    ImageDraw.Draw(tampered).rectangle((width * 0.35, height * 0.35, width * 0.6, height * 0.6), fill=(10, 200, 240))
    peaks = []
    for image in (clean, tampered):
        prepared = predictor.prepare(image)
        with torch.no_grad():
            _, heatmap, _ = model(torch.from_numpy(prepared.array[None]), torch.tensor([prepared.product]))
        peaks.append(float(heatmap.max()))
    assert peaks[0] < 3 and peaks[1] > peaks[0] * 1.5


def test_a_photo_of_no_known_product_is_a_retake(comparator_predictor):
    from inference.align import NotRecognised

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8))
    with pytest.raises(NotRecognised):
        comparator_predictor.prepare(noise)


def test_the_head_trains_on_photo_pairs_and_loads_back(reference_data, tmp_path):
    from inference.preprocess import PreprocessSpec
    from training.recipes.comparator.fit import load_head
    from training.recipes.comparator.model import ComparatorModel, head_inputs
    from training.recipes.comparator.train_head import describe_benchmark, fit_head

    spec = PreprocessSpec(*REFERENCE_SIZE)
    pairs = describe_benchmark(reference_data, spec, augment=1, progress=False)
    assert pairs.inputs.shape == (len(pairs.labels), head_inputs()) and np.isfinite(pairs.inputs).all()
    assert set(pairs.labels.tolist()) == {0, 1} and set(pairs.splits.tolist()) == {"val", "test"}
    assert (pairs.changes != "").any()  # benign changes of the photos are part of the pairs
    head = fit_head(pairs.inputs, pairs.labels, pairs.kinds, steps=50)
    with torch.no_grad():
        scores = head(torch.from_numpy(pairs.inputs).float()).numpy()
    assert scores[pairs.labels == 1].mean() > scores[pairs.labels == 0].mean()  # it learned the direction
    path = tmp_path / "head.pt"
    torch.save({"head": head.state_dict(), "provenance": {"pairs": len(pairs.labels)}}, path)
    model = ComparatorModel(1, REFERENCE_SIZE, spec.mean, spec.std, pretrained=False)
    assert load_head(model, path) == {"pairs": len(pairs.labels)}
    assert torch.equal(model.head.weight, head.weight) and torch.equal(model.head.reads, head.reads)


def test_photos_registered_to_another_product_train_no_head():
    """Serving compares such a photo with the other product's genuines: the benchmark keeps it for its
    verdicts, but a head learning from it would learn what two products differ by."""
    from training.recipes.comparator.train_head import Pairs, training_rows

    def column(*values):
        return np.array(values)

    pairs = Pairs(np.zeros((4, 2)), column(0, 1, 0, 1), column("", "hue", "", "font"), column("a", "a", "a", "a"),
                  column("val", "val", "test", "test"), column("", "", "", "warm"), column("p", "q", "r", "s"),
                  column(False, False, True, False))
    assert training_rows(pairs, {"a"}).tolist() == [True, True, False, False]  # font: not a visible kind
    assert training_rows(pairs, {"b"}).tolist() == [False] * 4


def test_a_missing_or_foreign_head_is_named(tmp_path):
    from training.recipes.comparator.fit import load_head
    from training.recipes.comparator.model import ComparatorModel

    model = ComparatorModel(1, (64, 64), (0.5,) * 3, (0.5,) * 3, pretrained=False)
    with pytest.raises(DataError, match="No trained comparator head .* `make comparator`"):
        load_head(model, tmp_path / "absent.pt")
    torch.save({"head": {"weight": torch.zeros(1, 3)}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="is not a head of this comparator"):
        load_head(model, tmp_path / "other.pt")


def test_a_product_needs_three_registered_genuines(reference_data):
    from training.recipes.comparator.enrol import MIN_PHOTOS, enrollable
    from training.recipes.reference.fit import Registered

    frames = [Image.new("RGB", REFERENCE_SIZE)] * MIN_PHOTOS
    found = Registered(["a", "b"], ["ref-a", "ref-b"], [frames, frames[:2]], {"a": frames[0], "b": frames[0]},
                       {"a": "a", "b": "b"}, 0)
    kept, dropped = enrollable(found)
    assert kept.products == ["a"] and kept.references == ["ref-a"] and dropped == ["b"] and kept.left_out == 2
    with pytest.raises(DataError, match="No product has 3"):
        enrollable(found._replace(frames=[frames[:1], frames[:2]]))


def test_enrolment_keeps_evenly_chosen_genuines_and_their_own_spread(reference_data, comparator_run):
    from training.checkpoint import load_checkpoint
    from training.recipes.comparator.enrol import evenly
    from training.recipes.comparator.model import COMPARISONS, MAX_REFERENCES

    model, _, _ = load_checkpoint(comparator_run[0] / "checkpoint.pt")
    assert list(evenly(5, 16)) == [0, 1, 2, 3, 4] and list(evenly(40, 4)) == [0, 13, 26, 39]
    assert ((model.count >= 3) & (model.count <= MAX_REFERENCES)).all()
    assert model.typical.shape == (2, len(COMPARISONS)) and (model.typical > 0).all()
    assert (model.hull.sum((1, 2)) >= 16).all()  # the print outline covers part of the frame


def test_genuine_photos_alone_enrol_with_edited_val_counterfeits(reference_data, tmp_path):
    """A brand with no seized fakes: val counterfeits are made by editing val genuines, and the model file
    says that they prove nothing about real fakes."""
    import shutil

    from training.config import TrainConfig
    from training.train import fit
    from training.val_edits import VAL_EDITED_WARNING

    data = tmp_path / "genuine-only"
    shutil.copytree(reference_data, data)
    for split in ("train", "val"):
        shutil.rmtree(data / split / "counterfeit", ignore_errors=True)
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), recipe="comparator", image_size=REFERENCE_SIZE)
    summary = fit(config, progress=False)
    meta = Predictor(summary["model"]).metadata
    assert meta.metrics["val_counterfeits"] == "edited from val genuines"
    assert summary["warnings"][0] == VAL_EDITED_WARNING and meta.metrics["warnings"][0] == VAL_EDITED_WARNING
    assert meta.metrics["val_n"] + meta.metrics["val_not_recognised"] == 8  # the val genuines, half edited


def test_edited_val_turns_every_second_genuine_into_a_counterfeit(reference_data):
    from inference.predictor import decode, prepare
    from inference.preprocess import PreprocessSpec
    from training.val_edits import edited_val

    spec = PreprocessSpec(*REFERENCE_SIZE)
    genuines = [s for s in list_split(reference_data, "val") if s.label == 0][:6]
    prepared, labels, not_recognised = edited_val(genuines, spec)
    assert list(labels) == [0, 1, 0, 1, 0, 1] and not_recognised == 0
    unedited = [prepare(decode(s.path.read_bytes(), spec).image, spec).array for s in genuines[:2]]
    assert np.array_equal(prepared[0].array, unedited[0])  # genuines are left as they are
    changed = np.abs(prepared[1].array - unedited[1]).max(0) > 0.1
    assert changed.mean() > 0.005  # the second one's print was edited, in places


def test_a_product_is_enrolled_and_removed_without_changing_the_others(reference_data, comparator_run, tmp_path):
    """`counterfeit catalogue remove/add` on a comparator: product-b removed, then enrolled back from its train
    genuines; product-a scores bit for bit the same in all three files, and the head is the shipped one."""
    from training.catalogue import add_product, remove_product

    original = comparator_run[0] / "model.onnx"
    removed, readded = tmp_path / "removed.onnx", tmp_path / "readded.onnx"
    remove_product(original, "product-b", removed)
    added = add_product(removed, "product-b", reference_data / "train" / "genuine" / "product-b", readded)
    assert added.photos >= 3 and added.centre == [] and added.spread == []
    kept = [s for s in list_split(reference_data, "test") if s.product == "product-a"][:4]
    scores = []
    for path in (original, removed, readded):
        predictor = Predictor(path)
        assert [r.product for r in predictor.metadata.references][0] == "product-a"
        scores.append([p.score for p in predictor.predict([photo(s.path) for s in kept])])
    assert scores[0] == scores[1] == scores[2]
    back = Predictor(readded)
    moved = [s for s in list_split(reference_data, "test") if s.product == "product-b"]
    found = [back.metadata.references[back.prepare(photo(s.path)).product].product for s in moved]
    assert np.mean([f == "product-b" for f in found]) >= 0.9


def test_an_ink_printed_lighter_moves_its_lightness_against_paper_white_not_against_exposure():
    """ink_lightness: a print of white paper and a red ink covering three quarters of it. An exposure 0.7x as
    bright moves no entry; the red ink printed 0.15 lighter moves the red entry by 0.15 of white (against the
    whole print, which moves with the ink, it moved by 0.06)."""
    from training.recipes.comparator.model import ink_lightness
    from training.recipes.reference.hue import bin_directions, hue_weights

    rgb = torch.ones(1, 3, 32, 32)  # 8x8-pooled cells in 0..1: paper white
    rgb[:, :, 2:30, 2:30] = torch.tensor([0.6, 0.1, 0.1]).view(1, 3, 1, 1)  # the red ink: 77% of the frame
    lighter = rgb.clone()
    lighter[:, :, 2:30, 2:30] += 0.15  # the red ink printed lighter (HSV value 0.6 -> 0.75)
    hull = torch.ones(1, 32, 32)

    def red(pixels) -> float:  # the entry of the hue bin centred on red
        weights, pooled = hue_weights(pixels, hull, bin_directions())
        return float(ink_lightness(weights, pooled, hull)[0, 0])

    assert red(0.7 * rgb) == pytest.approx(red(rgb), rel=1e-4)
    assert red(lighter) - red(rgb) == pytest.approx(0.15, abs=0.01)
