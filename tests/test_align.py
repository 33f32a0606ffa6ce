"""Registration's matching step (inference/align.py) on crafted keypoints, where the true answer is known."""

from __future__ import annotations

import numpy as np

from inference.align import MIN_INLIERS, Reference, best_match, match

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
