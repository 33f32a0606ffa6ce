"""Benign photo changes (evaluation/robustness.py) and the robustness evaluation through the service's path."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from evaluation.robustness import (
    CHANGES,
    UNCHANGED,
    Outcome,
    change_rng,
    encode,
    evaluate_robustness,
    format_table,
    parse_changes,
    summarize,
)
from inference.images import load_image, sniff_format
from inference.quality import QualityThresholds, check, chroma, sharpness, working_luma

# The changes that draw from the rng; the others (encodings, resizes, turns, grayscale) are fixed.
RANDOM = {"glare", "specular", "sharpen", "denoise", "warm", "cool", "brighter", "darker", "motion-blur", "finger",
          "sticker", "perspective", "curved"}
TINY_PHOTOS = QualityThresholds(min_side=96)  # the fixtures' photos are 160x120 (see tests/conftest.py)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Image.Image]:
    """Six 640x480 synth packaging photos, decoded, as a phone would have taken them."""
    from datatools.synth import write_dataset

    root = tmp_path_factory.mktemp("robustness") / "synth"
    write_dataset(root, seed=3, products=2, n_train=2, n_val=2, n_test=2, progress=False)
    return [load_image(path.read_bytes()).image for path in sorted(root.rglob("*.jpg"))]


def decoded(data: bytes) -> Image.Image:
    return load_image(data).image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.float32)


def changed_share(name: str, photo: Image.Image, seed: int, box: float = 1.0) -> float:
    """Share of pixels (within the central `box` of each side) that the change altered by > 40 levels."""
    before, after = pixels(decoded(encode(photo))), pixels(decoded(CHANGES[name](photo, change_rng(seed, name, 0))))
    altered = np.abs(after - before).max(axis=-1) > 40
    h, w = altered.shape
    top, left = round(h * (1 - box) / 2), round(w * (1 - box) / 2)
    return float(altered[top : h - top, left : w - left].mean())


@pytest.mark.parametrize("name", CHANGES)
def test_each_change_is_deterministic_and_decodable(name, photos):
    photo = photos[0]
    first, again = (CHANGES[name](photo, change_rng(7, name, 0)) for _ in range(2))
    assert first == again
    assert sniff_format(first) == ("WEBP" if name == "webp-75" else "JPEG")
    assert decoded(first).mode == "RGB" and min(decoded(first).size) >= 120
    other_seed = CHANGES[name](photo, change_rng(8, name, 0))
    assert (other_seed != first) == (name in RANDOM)


def test_change_rngs_depend_on_seed_change_and_photo_only():
    draw = lambda *key: change_rng(*key).uniform()  # noqa: E731
    assert draw(0, "glare", 3) == draw(0, "glare", 3)
    assert len({draw(0, "glare", 3), draw(1, "glare", 3), draw(0, "finger", 3), draw(0, "glare", 4)}) == 4


def test_rotations_turn_the_pixels(photos):
    photo = photos[1]
    base = pixels(decoded(encode(photo)))
    for name, turns in (("rotate-90", 1), ("rotate-180", 2), ("rotate-270", 3)):
        turned = decoded(CHANGES[name](photo, change_rng(0, name, 0)))
        assert turned.size == ((480, 640) if turns % 2 else (640, 480))
        assert np.abs(pixels(turned) - np.rot90(base, turns)).mean() < 3  # counter-clockwise, JPEG noise only


def test_resizes_keep_the_smaller_size(photos):
    assert decoded(CHANGES["half"](photos[0], change_rng(0, "half", 0))).size == (320, 240)
    assert decoded(CHANGES["quarter"](photos[0], change_rng(0, "quarter", 0))).size == (160, 120)


def test_encodings_lose_more_at_lower_quality(photos):
    photo = photos[2]
    errors = {}
    for name in ("jpeg-40", "jpeg-70", "jpeg-95", "webp-75"):
        after = pixels(decoded(CHANGES[name](photo, change_rng(0, name, 0))))
        errors[name] = float(np.abs(after - pixels(photo)).mean())
    assert errors["jpeg-40"] > errors["jpeg-70"] > errors["jpeg-95"] > 0
    assert 0 < errors["webp-75"] < errors["jpeg-40"]


def test_grayscale_has_no_chroma_and_is_retaken(photos):
    data = CHANGES["grayscale"](photos[0], change_rng(0, "grayscale", 0))
    assert Image.open(io.BytesIO(data)).mode == "L"
    image = decoded(data)
    assert chroma(image) == 0 and chroma(photos[0]) > 10
    assert check(image, image.size).reasons == ("grayscale",)


def test_colour_and_exposure_changes_move_the_right_way(photos):
    photo = photos[3]
    mean = pixels(photo).reshape(-1, 3).mean(axis=0)
    for name in ("warm", "cool", "brighter", "darker"):
        after = pixels(decoded(CHANGES[name](photo, change_rng(0, name, 0)))).reshape(-1, 3).mean(axis=0)
        red_over_blue = (after[0] / after[2]) / (mean[0] / mean[2])
        brightness = after.mean() / mean.mean()
        expected = {"warm": red_over_blue > 1.1, "cool": red_over_blue < 0.9,
                    "brighter": brightness > 1.1, "darker": brightness < 0.9}
        assert expected[name], (name, red_over_blue, brightness)


def test_sharpen_adds_detail_and_motion_blur_removes_some(photos):
    photo = photos[4]
    measure = lambda data: sharpness(working_luma(decoded(data)))  # noqa: E731
    base = measure(encode(photo))
    assert measure(CHANGES["sharpen"](photo, change_rng(0, "sharpen", 0))) > 1.2 * base
    assert measure(CHANGES["motion-blur"](photo, change_rng(0, "motion-blur", 0))) < 0.95 * base


def test_denoise_removes_sensor_noise(photos):
    photo = pixels(photos[4])
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    smoothed = pixels(decoded(CHANGES["denoise"](Image.fromarray(noisy), change_rng(0, "denoise", 0))))
    assert np.abs(smoothed - photo).mean() < 0.8 * np.abs(noisy - photo).mean()


def test_mild_motion_blur_passes_the_quality_gate(photos):
    for index, photo in enumerate(photos):
        data = CHANGES["motion-blur"](photo, change_rng(0, "motion-blur", index))
        loaded = load_image(data, draft_to=(320, 240))
        assert check(loaded.image, (loaded.width, loaded.height)).ok


@pytest.mark.parametrize("name", ["finger", "sticker"])
def test_occluders_cover_at_most_a_tenth(name, photos):
    for seed in range(12):
        frame, centre = changed_share(name, photos[seed % 6], seed), changed_share(name, photos[seed % 6], seed, 0.6)
        assert 0.005 < frame <= 0.10 and centre <= 0.10, (seed, frame, centre)


def test_glare_blows_out_the_middle_and_specular_only_spots(photos):
    photo = photos[5]
    glared = decoded(CHANGES["glare"](photo, change_rng(0, "glare", 0)))
    glints = decoded(CHANGES["specular"](photo, change_rng(0, "specular", 0)))
    before = check(photo, photo.size).measures["glare"]
    assert check(glared, glared.size).measures["glare"] > before + 0.02
    assert check(glints, glints.size).measures["glare"] < 0.03
    blown = lambda image: int((working_luma(image) >= 250).sum())  # noqa: E731
    assert blown(glints) > blown(photo) + 20


def test_geometric_warps_keep_the_frame_filled(photos):
    photo = photos[0]
    for name in ("perspective", "curved"):
        warped = decoded(CHANGES[name](photo, change_rng(0, name, 0)))
        assert warped.size == photo.size
        difference = np.abs(pixels(warped) - pixels(photo)).mean()
        assert difference > 5, name  # really moved
        assert pixels(warped).mean() > 0.8 * pixels(photo).mean()  # no black corners or borders


def test_parse_changes():
    assert parse_changes(None) == parse_changes("") == list(CHANGES)
    assert parse_changes(" glare,half ") == ["glare", "half"]
    with pytest.raises(ValueError, match="unknown change glow; valid: glare,specular,"):
        parse_changes("glare,glow")


def test_shares_count_every_photo_of_the_class():
    genuine, fake = 0, 1
    answers = ([Outcome(genuine, "genuine", 0.1)] * 6 + [Outcome(genuine, "counterfeit", 0.9)]
               + [Outcome(genuine, "inconclusive", 0.5)] + [Outcome(genuine, "retake", reasons=("glare", "blurry"))] * 2
               + [Outcome(fake, "counterfeit", 0.8)] * 3 + [Outcome(fake, "retake", reasons=("glare",))]
               + [Outcome(fake, "error", reasons=("corrupt_image",))])
    row = summarize(answers)
    assert row["n"] == 15 and row["errors"] == 1
    assert row["genuine_as_counterfeit"] == pytest.approx(0.1) and row["genuine_inconclusive"] == pytest.approx(0.1)
    assert row["retake"] == pytest.approx(3 / 15) and row["retake_reasons"] == {"blurry": 2, "glare": 3}
    assert row["caught"] == pytest.approx(3 / 5)
    assert row["roc_auc"] == pytest.approx(7 / 8)  # the 3 scored fakes outrank all genuines but the 0.9 one


def test_evaluate_robustness_answers_as_the_service(synth_data, classifier_predictor):
    """On the classifier: synth_data's products are none the reference model knows."""
    from evaluation.screen import screen_files
    from inference.layout import list_labelled, resolve_labelled
    from inference.metrics import roc_auc

    samples = list_labelled(resolve_labelled(synth_data, "test"))
    changes = ["jpeg-95", "grayscale", "half", "rotate-90"]
    report = evaluate_robustness(samples, classifier_predictor, TINY_PHOTOS, changes, seed=0, progress=False)
    rows = report["changes"]
    assert list(rows) == [UNCHANGED, *changes]
    assert all(row["n"] == len(samples) and row["errors"] == 0 for row in rows.values())
    # Unchanged photos: the same scores and verdicts as the bulk screen (which skips the gate they all pass)
    records = list(screen_files([s.path for s in samples], classifier_predictor))
    fakes = [r for s, r in zip(samples, records) if s.label == 1]
    genuines = [r for s, r in zip(samples, records) if s.label == 0]
    assert rows[UNCHANGED]["retake"] == 0
    assert rows[UNCHANGED]["roc_auc"] == roc_auc(np.array([r["score"] for r in records]), [s.label for s in samples])
    assert rows[UNCHANGED]["caught"] == sum(r["verdict"] == "counterfeit" for r in fakes) / len(fakes)
    called = sum(r["verdict"] == "counterfeit" for r in genuines)
    assert rows[UNCHANGED]["genuine_as_counterfeit"] == called / len(genuines)
    # What the gate does to the changed copies
    assert rows["grayscale"]["retake"] == 1 and rows["grayscale"]["retake_reasons"] == {"grayscale": len(samples)}
    assert rows["half"]["retake_reasons"] == {"too_small": len(samples)}  # 80x60 < 96 px
    assert rows["jpeg-95"]["retake"] == 0 and abs(rows["jpeg-95"]["caught_change_points"]) <= 100 / len(fakes)
    assert rows[UNCHANGED]["caught_change_points"] == 0
    for row in rows.values():
        assert row["passes"] == (row["genuine_as_counterfeit"] <= 0.01 and row["caught_change_points"] >= -5)
    again = evaluate_robustness(samples, classifier_predictor, TINY_PHOTOS, changes, seed=0, progress=False)
    assert json.dumps(again, sort_keys=True) == json.dumps(report, sort_keys=True)  # NaN-safe comparison
    line = next(line for line in format_table(report).splitlines() if line.startswith("grayscale"))
    assert line.split()[1] == str(len(samples)) and line.endswith(f"grayscale {len(samples)}")


def test_cli_prints_the_table_and_writes_the_report(run_cli, synth_data, classifier_model, tmp_path, monkeypatch):
    from inference.layout import list_split

    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("COUNTERFEIT_QUALITY_MIN_SIDE", "96")
    code, out, err = run_cli("evaluate", synth_data, "--model", classifier_model, "--robustness",
                             "--changes", "jpeg-70,rotate-180", "--report", tmp_path / "report")
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert rows == ["unchanged", "jpeg-70", "rotate-180"]
    saved = json.loads((tmp_path / "report" / "robustness.json").read_text())
    assert list(saved["changes"]) == rows and saved["changes"]["unchanged"]["n"] == len(list_split(synth_data, "test"))
    assert saved["changes"]["unchanged"]["retake"] == 0  # the setting reached the gate
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_cli_refuses_unknown_changes(run_cli, synth_data, classifier_model):
    code, out, err = run_cli("evaluate", synth_data, "--model", classifier_model, "--robustness", "--changes", "glow")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "unknown change glow" in err and "motion-blur" in err
    code, _, err = run_cli("evaluate", synth_data, "--model", classifier_model, "--changes", "glare")
    assert code == 2 and "--changes needs --robustness" in err
