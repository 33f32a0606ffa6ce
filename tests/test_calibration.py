"""Calibration and metrics: checked against values worked out by hand or by construction."""

import numpy as np
import pytest

from inference.calibration import calibrate, choose_thresholds, fit_temperature
from inference.metrics import average_precision, expected_calibration_error, roc_auc
from inference.predictor import softmax_scores


def test_roc_auc_known_values():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    # one tie between a positive and a negative counts 1/2: (1 + 1 + 1 + 0.5) / 4
    assert roc_auc(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.875)
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_average_precision_known_value():
    # ranking: +, -, +  -> precisions at the positives 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)


def test_ece_is_zero_when_scores_match_frequencies():
    scores = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(scores, labels) == pytest.approx(0.0)


def test_temperature_scaling_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = np.stack([np.zeros_like(true_logit), true_logit * 3.0], axis=1)  # over-confident by 3x
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.05)


def test_thresholds_reach_the_target_precision_on_a_fixture():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    logits = np.stack([np.zeros(4000), rng.normal(np.where(labels == 1, 1.5, -1.5), 1.0)], axis=1)
    temperature, thresholds = calibrate(logits, labels, target_precision=0.95)
    scores = softmax_scores(logits, temperature, 1)
    said_fake, said_genuine = scores >= thresholds.high, scores <= thresholds.low
    assert labels[said_fake].mean() >= 0.95
    assert (1 - labels[said_genuine]).mean() >= 0.95
    assert 0 < thresholds.low < 0.5 < thresholds.high < 1
    # ... and the band is the narrowest: taking in the next score on either side breaks the target
    next_high = np.max(scores[scores < thresholds.high])
    next_low = np.min(scores[scores > thresholds.low])
    assert labels[scores >= next_high].mean() < 0.95
    assert (1 - labels[scores <= next_low]).mean() < 0.95


def test_thresholds_decide_nothing_rather_than_overclaim():
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    labels = np.array([0, 1, 0, 1])  # the most confident on each side is wrong
    thresholds = choose_thresholds(scores, labels, target_precision=0.99)
    assert (thresholds.low, thresholds.high) == (0.0, 1.0)


def test_perfect_separation_gives_the_widest_decisions():
    scores = np.array([0.05, 0.1, 0.3, 0.7, 0.9, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1])
    thresholds = choose_thresholds(scores, labels, target_precision=0.99)
    assert (thresholds.low, thresholds.high) == (0.3, 0.7)


def test_calibration_problems_say_plainly_what_val_shows():
    from inference.calibration import calibration_problems
    from inference.metadata import Thresholds

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 50)
    separated = np.stack([np.zeros(100), 4.0 * (2 * labels - 1) + rng.normal(0, 1, 100)], 1)
    temperature, thresholds = calibrate(separated, labels, 0.9)
    assert calibration_problems(separated, labels, temperature, thresholds, 0.9) == []
    # A model that learned nothing: its temperature runs to the bound and every score sits at 0.5.
    noise = np.zeros((100, 2))
    temperature, thresholds = calibrate(noise, labels, 0.99)
    problems = calibration_problems(noise, labels, temperature, thresholds, 0.99)
    assert any("separates nothing" in p for p in problems) and any("within" in p and "of 0.5" in p for p in problems)
    assert any("never answer 'counterfeit'" in p for p in problems)
    # Separated, but the counterfeit side cannot reach the target: that verdict can never be given.
    high_never = calibration_problems(separated, labels, 1.0, Thresholds(low=0.2, high=1.0), 0.99)
    assert high_never == ["no score reaches the target precision 0.99 for counterfeit on val: the model will "
                          "never answer 'counterfeit' (lower --target-precision, or add data)"]


def test_the_model_card_puts_warnings_first():
    from training.model_card import _warning_lines

    assert _warning_lines([]) == []
    lines = _warning_lines(["the model separates nothing on val: ROC-AUC 0.50 (0.5 is chance)"])
    assert lines[0].startswith("## Warnings") and lines[1] == "- **The model separates nothing on val: ROC-AUC 0.50 (0.5 is chance).**"
