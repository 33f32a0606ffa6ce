"""Issue 15's faster registration: a photo's keypoints found on its frame reduced by up to sqrt(2) register it
to the same product, nearly the same homography, as full-size keypoints; small frames are not reduced, so
their answers are those of before. (Speed itself is measured by bench/speed.py, never asserted here.)"""

from __future__ import annotations

import numpy as np
import pytest
from test_align import exhaustive_best, project

from inference.align import MIN_REDUCED_PIXELS, best_match, keypoints, photo_keypoints, register
from inference.assets import DEMO_MODEL, SAMPLES_DIR
from inference.predictor import Predictor
from inference.preprocess import letterbox

MAX_SHIFT = 1.0  # pixels of the 640x480 frame a print point may move when registered on the reduced frame


@pytest.fixture(scope="module")
def demo():
    return Predictor(DEMO_MODEL)


def frame_of(predictor: Predictor, path) -> "Image.Image":  # noqa: F821 - PIL image
    return letterbox(predictor.load(path.read_bytes()).image, predictor.spec)


@pytest.mark.parametrize("name", ["genuine-1.jpg", "genuine-2.jpg", "counterfeit-1.jpg", "counterfeit-2.jpg"])
def test_the_reduced_frame_registers_the_same_product(demo, name):
    frame = frame_of(demo, SAMPLES_DIR / name)
    assert frame.width * frame.height >= 2 * MIN_REDUCED_PIXELS  # reduced by the full sqrt(2)
    references = demo.metadata.references
    full, reduced = best_match(*keypoints(frame), references), register(frame, references)
    assert reduced is not None and reduced.product == full.product


@pytest.mark.parametrize("name", ["genuine-1.jpg", "genuine-2.jpg"])
def test_a_genuine_print_lands_within_a_pixel_of_the_full_size_registration(demo, name):
    """Where the print is (the product's reference keypoints), both homographies put it within MAX_SHIFT:
    the location-by-location statistics compare the same pixels. (A counterfeit's altered print may
    register less alike: demo counterfeit-1 moves up to 11 px at its edge, 2 px at the median.)"""
    frame = frame_of(demo, SAMPLES_DIR / name)
    references = demo.metadata.references
    full, reduced = best_match(*keypoints(frame), references), register(frame, references)
    print_points = references[full.product].points
    shift = np.abs(project(print_points, reduced.homography) - project(print_points, full.homography)).max(axis=1)
    assert shift.max() < MAX_SHIFT


def test_reduced_keypoints_are_in_pixels_of_the_frame(demo):
    """Keypoints found on the reduced frame land where the full-size ones are (the same corners of the print)."""
    frame = frame_of(demo, SAMPLES_DIR / "genuine-1.jpg")
    (small, _), (large, _) = photo_keypoints(frame), keypoints(frame)
    nearest = np.sqrt(((small[:, None, :] - large[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert len(small) < len(large) and np.median(nearest) < 1.0


def test_small_frames_are_not_reduced_and_register_as_before(reference_data, reference_predictor):
    """The conftest model's 320x240 frames: the very keypoints of before, and the answer of trying every
    product with OpenCV's brute-force matcher."""
    spec, references = reference_predictor.spec, reference_predictor.metadata.references
    photos = sorted((reference_data / "test").rglob("*.jpg"))[:6]
    for path in photos:
        frame = frame_of(reference_predictor, path)
        (ours, our_descriptors), (theirs, their_descriptors) = photo_keypoints(frame), keypoints(frame)
        assert frame.size == spec.size and np.array_equal(ours, theirs)
        assert np.array_equal(our_descriptors, their_descriptors)
        found, before = register(frame, references), exhaustive_best(theirs, their_descriptors, references)
        assert (found.product, found.inliers) == before if before else found is None


def test_a_photo_the_reduced_frame_cannot_register_is_registered_at_full_size(demo, monkeypatch):
    """Reduced far too much (8x, to 80x60) no product is found; the full-size frame is tried then, so the
    answer is full-size registration's, never 'not recognised'."""
    import inference.align as align

    frame = frame_of(demo, SAMPLES_DIR / "genuine-1.jpg")
    references = demo.metadata.references
    monkeypatch.setattr(align, "PHOTO_REDUCTION", 8.0)
    monkeypatch.setattr(align, "MIN_REDUCED_PIXELS", 80 * 60)
    assert best_match(*photo_keypoints(frame), references) is None
    found, full = register(frame, references), best_match(*keypoints(frame), references)
    assert (found.product, found.inliers) == (full.product, full.inliers)
    assert np.allclose(found.homography, full.homography)
