"""Registration's matching step (inference/align.py) on crafted keypoints, where the true answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.align import (
    COORDINATES,
    MIN_INLIERS,
    RATIO,
    SIFT_OFFSET,
    Reference,
    best_match,
    candidates,
    keypoints,
    marked,
    match,
    references_from_json,
    references_to_json,
)

TRUE_HOMOGRAPHY = np.array([[0.9, -0.2, 30.0], [0.15, 1.05, -12.0], [1e-4, -2e-4, 1.0]])


def project(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    homogeneous = np.c_[points, np.ones(len(points))] @ homography.T
    return (homogeneous[:, :2] / homogeneous[:, 2:]).astype(np.float32)


def crafted_reference(rng: np.random.Generator, count: int = 40, name: str = "a") -> Reference:
    descriptors = rng.random((count, 128)).astype(np.float32) * 100  # distinct: nearest is far nearer than 2nd
    return Reference(name, rng.uniform(20, 300, (count, 2)).astype(np.float32), descriptors)


def photographed(reference: Reference, rng: np.random.Generator, outliers: int = 25):
    """The reference's keypoints seen through TRUE_HOMOGRAPHY, plus background keypoints, shuffled."""
    points = np.r_[project(reference.points, TRUE_HOMOGRAPHY), rng.uniform(0, 320, (outliers, 2)).astype(np.float32)]
    descriptors = np.r_[reference.descriptors + rng.normal(0, 1, reference.descriptors.shape).astype(np.float32),
                        rng.random((outliers, 128)).astype(np.float32) * 100]
    order = rng.permutation(len(points))
    return points[order], descriptors[order]


def test_match_recovers_the_homography_and_the_keypoints_that_agree():
    rng = np.random.default_rng(0)
    reference = crafted_reference(rng)
    points, descriptors = photographed(reference, rng)
    homography, agreeing = match(reference, points, descriptors)
    grid = np.array([[0, 0], [320, 0], [320, 240], [0, 240], [160, 120]], np.float32)
    assert np.abs(project(grid, homography) - project(grid, TRUE_HOMOGRAPHY)).max() < 0.5  # pixels
    assert sorted(agreeing.tolist()) == list(range(len(reference.points)))


def test_a_keypoint_moved_off_its_place_does_not_agree():
    rng = np.random.default_rng(1)
    reference = crafted_reference(rng)
    points, descriptors = photographed(reference, rng, outliers=0)
    moved = int(np.argmin(np.abs(descriptors - reference.descriptors[7]).sum(1)))  # where keypoint 7 went
    points[moved] += 40  # its descriptor still matches, its position no longer fits the homography
    _, agreeing = match(reference, points, descriptors)
    assert 7 not in agreeing and len(agreeing) == len(reference.points) - 1


def test_ambiguous_descriptors_fail_the_ratio_test():
    """A repeated pattern (each descriptor twice in the photo) matches nothing for sure."""
    rng = np.random.default_rng(2)
    reference = crafted_reference(rng)
    points, descriptors = photographed(reference, rng, outliers=0)
    twice = np.r_[points, points + 50], np.r_[descriptors, descriptors]
    assert match(reference, *twice)[0] is None


def test_best_match_picks_the_product_with_most_inliers_and_none_below_the_minimum():
    rng = np.random.default_rng(3)
    shown, other = crafted_reference(rng, name="shown"), crafted_reference(rng, name="other")
    points, descriptors = photographed(shown, rng)
    found = best_match(points, descriptors, [other, shown])
    assert found is not None and found.product == 1 and found.inliers == len(shown.points)
    few = crafted_reference(rng, count=MIN_INLIERS - 1, name="few")
    assert best_match(*photographed(few, rng), [few]) is None
    assert match(few, points[:3], descriptors[:3])[0] is None  # too few keypoints for any homography


def opencv_ratio_matches(reference: Reference, descriptors: np.ndarray) -> list[tuple[int, int]]:
    """The matches as registration found them before issue 15: OpenCV's brute-force matcher, ratio test."""
    import cv2

    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(reference.descriptors, descriptors, k=2)
    return sorted((p[0].queryIdx, p[0].trainIdx) for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance)


def test_the_matrix_matcher_finds_exactly_the_brute_force_matches_on_sift_like_descriptors():
    """SIFT descriptors hold whole numbers 0..255: squared distances from one matrix product are exact, so
    the ratio test keeps the very pairs OpenCV's brute-force matcher keeps, borderline ones included."""
    rng = np.random.default_rng(4)
    reference = Reference("a", rng.uniform(0, 300, (300, 2)).astype(np.float32),
                          rng.integers(0, 256, (300, 128)).astype(np.float32))
    # Each of 200 reference keypoints seen twice, the second copy 0.8-1.6x as far off: ratios around RATIO.
    near = reference.descriptors[:200] + rng.integers(-30, 31, (200, 128))
    decoy = reference.descriptors[:200] + rng.integers(-30, 31, (200, 128)) * rng.uniform(0.8, 1.6, (200, 1))
    descriptors = np.clip(np.rint(np.r_[near, decoy, rng.integers(0, 256, (150, 128))]), 0, 255).astype(np.float32)
    found = candidates(reference, np.zeros((len(descriptors), 2), np.float32), descriptors)
    expected = opencv_ratio_matches(reference, descriptors)
    assert 30 < len(expected) < 170  # the ratio test does decide here
    assert sorted(zip(found.mine.tolist(), found.theirs.tolist())) == expected


def exhaustive_best(points, descriptors, references) -> tuple[int, int] | None:
    """(product, inliers) trying every product in order, the first of equals by (inliers on the product's own
    keypoints, inliers): best_match without its pruning."""
    best = None
    for index, reference in enumerate(references):
        homography, agreeing = match(reference, points, descriptors)
        rank = (reference.own(agreeing), len(agreeing))
        if homography is not None and len(agreeing) >= MIN_INLIERS and (best is None or rank > best[2]):
            best = (index, len(agreeing), rank)
    return best[:2] if best else None


def test_best_match_skips_hopeless_products_but_answers_as_trying_all_in_order():
    rng = np.random.default_rng(5)
    shown = crafted_reference(rng, name="shown")
    half = Reference("half", shown.points[:25], shown.descriptors[:25])  # fewer matches: cannot win
    others = [crafted_reference(rng, name=f"other-{i}") for i in range(4)]
    points, descriptors = photographed(shown, rng)
    for references in ([*others, half, shown], [shown, half, *others], [half, *others]):
        found = best_match(points, descriptors, references)
        assert (found.product, found.inliers) == exhaustive_best(points, descriptors, references)
    twin = Reference("twin", shown.points.copy(), shown.descriptors.copy())  # as many inliers: first listed wins
    assert best_match(points, descriptors, [others[0], twin, shown]).product == 1
    assert best_match(points, descriptors, [others[0], shown, twin]).product == 1


def test_a_product_with_fewer_matches_still_wins_a_tie_on_inliers_when_listed_first():
    """Pruning bounds a product by its ratio-test matches, not by the winner's: one with as many matches as
    the best has inliers may still tie it, and then the product listed first wins."""
    rng = np.random.default_rng(6)
    shown = crafted_reference(rng, name="shown")
    points, descriptors = photographed(shown, rng)
    unmatched = np.setdiff1d(np.arange(len(points)), candidates(shown, points, descriptors).theirs)[:5]
    # The same product plus 5 keypoints that match background keypoints at the wrong places: 45 matches, 40 inliers.
    padded = Reference("padded", np.r_[shown.points, rng.uniform(0, 50, (5, 2)).astype(np.float32)],
                       np.r_[shown.descriptors, descriptors[unmatched]])
    references = [Reference("twin", shown.points.copy(), shown.descriptors.copy()), padded]
    found = best_match(points, descriptors, references)
    assert len(candidates(padded, points, descriptors).mine) == len(shown.points) + 5
    assert (found.product, found.inliers) == exhaustive_best(points, descriptors, references) == (0, len(shown.points))


def test_registration_of_real_keypoints_answers_as_opencv_trying_every_product(reference_data, reference_predictor):
    """The conftest model's photos: the product and inlier count of OpenCV's brute-force matcher trying
    every product in order (the registration of before issue 15's matcher)."""
    from inference.align import keypoints, register
    from inference.preprocess import letterbox

    references = reference_predictor.metadata.references
    for path in sorted((reference_data / "test").rglob("*.jpg"))[:6]:
        frame = letterbox(reference_predictor.load(path.read_bytes()).image, reference_predictor.spec)
        found, before = register(frame, references), exhaustive_best(*keypoints(frame), references)
        assert (found.product, found.inliers) == before if before else found is None


def textured_photo(seed: int = 0, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Random blobs and edges: plenty of SIFT keypoints, none of them symmetric."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (200, 190, 170))
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        w, h = rng.uniform(4, 30, 2)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def matched_offsets(image: Image.Image, turned: Image.Image, back) -> np.ndarray:
    """(M, 2): where each keypoint of `turned`, mapped back by `back`, lies relative to its match in `image`."""
    points, descriptors = keypoints(image)
    found = candidates(Reference("photo", points, descriptors), *keypoints(turned))
    offsets = back(keypoints(turned)[0][found.theirs]) - points[found.mine]
    return offsets[np.linalg.norm(offsets, axis=1) < 2]  # the same feature, not a repeated pattern


@pytest.mark.parametrize("turn, back", [
    (Image.Transpose.ROTATE_180, lambda p, w, h: np.c_[w - 1 - p[:, 0], h - 1 - p[:, 1]]),
    (Image.Transpose.ROTATE_90, lambda p, w, h: np.c_[w - 1 - p[:, 1], p[:, 0]]),  # counter-clockwise
])
def test_keypoints_are_where_the_pixels_are_however_the_photo_is_turned(turn, back):
    """OpenCV's SIFT puts every point 0.25 px right of and below its place; uncorrected, a photo held upside
    down registers 0.5 px off and its genuines score as counterfeits (align.SIFT_OFFSET)."""
    image = textured_photo()
    offsets = matched_offsets(image, image.transpose(turn), lambda p: back(p, *image.size))
    assert len(offsets) > 50
    assert np.abs(np.median(offsets, axis=0)).max() < 0.05  # px; uncorrected: 0.5


def test_references_from_before_the_correction_are_corrected_when_read():
    reference = Reference("a", np.array([[10.0, 20.0], [30.5, 40.25]], np.float32),
                          np.arange(256, dtype=np.float32).reshape(2, 128))
    written = references_to_json([reference])
    assert written["coordinates"] == COORDINATES
    (again,) = references_from_json(written)
    np.testing.assert_array_equal(again.points, reference.points)
    (old,) = references_from_json({k: v for k, v in written.items() if k != "coordinates"})
    np.testing.assert_array_equal(old.points, reference.points - SIFT_OFFSET)


def test_products_rank_by_inliers_on_their_own_keypoints_marked_by_other_products_photos():
    """A sister product's reference holds the brand's print (shared) and more of it than the product shown:
    by all inliers the sister wins; once a photo of the sister has marked the brand's keypoints on the shown
    product's reference and a photo of the shown one marked them on the sister's, the product's own print decides."""
    rng = np.random.default_rng(7)
    brand = crafted_reference(rng, count=50, name="brand")
    own, sisters = crafted_reference(rng, count=20, name="own"), crafted_reference(rng, count=20, name="sister's")

    def joined(name, *parts):
        return Reference(name, np.concatenate([p.points for p in parts]), np.concatenate([p.descriptors for p in parts]))

    shown = joined("shown", Reference("b", brand.points[:25], brand.descriptors[:25]), own)  # 45 keypoints
    sister = joined("sister", brand, Reference("s", sisters.points[:8], sisters.descriptors[:8]))  # 58
    photo = photographed(joined("photo", brand, own), rng)  # the shown product's print: the whole brand, its own
    assert best_match(*photo, [shown, sister]).product == 1  # 50 inliers on the sister, 45 on its own product
    sister_photo = photographed(joined("photo", brand, sisters), rng)
    marked_shown, marked_sister = marked(shown, [sister_photo]), marked(sister, [photo])
    assert marked_shown.shared.sum() == 25 and marked_sister.shared.sum() == 50
    found = best_match(*photo, [marked_shown, marked_sister])
    assert (found.product, found.own, found.inliers) == (0, 20, 45)
    assert (found.product, found.inliers) == exhaustive_best(*photo, [marked_shown, marked_sister])
    back = references_from_json(references_to_json([marked_shown, marked_sister, brand]))
    assert [r.shared.tolist() for r in back[:2]] == [marked_shown.shared.tolist(), marked_sister.shared.tolist()]
    assert not back[2].shared.any()  # a reference without marks: every keypoint its own
    values = references_to_json([marked_shown])
    with pytest.raises(ValueError, match="shared marks"):  # a model file whose marks do not fit its keypoints
        references_from_json({**values, "shared": references_to_json([marked_sister])["shared"]})
