"""Calibration from validation outputs: a softmax temperature and the verdict thresholds. numpy only,
so `counterfeit calibrate` can redo it on new data from a model file alone."""

from __future__ import annotations

import numpy as np

from inference.metadata import TEMPERATURE_RANGE, Thresholds
from inference.metrics import last_of_ties, roc_auc, running_precision
from inference.predictor import softmax_scores

# log-spaced temperatures searched; 0.05..20 covers over- and under-confident nets by far. A model file
# whose temperature lies outside this range was not calibrated here, and loading refuses it (metadata.py).
_TEMPERATURES = np.exp(np.linspace(*np.log(TEMPERATURE_RANGE), 801))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T minimising validation NLL of softmax(logits / T)."""
    if len(labels) == 0:
        return 1.0
    losses = [negative_log_likelihood(logits, labels, t) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def choose_thresholds(scores: np.ndarray, labels: np.ndarray, target_precision: float) -> Thresholds:
    """The narrowest inconclusive band whose decided verdicts reach `target_precision` for each class.

    `high` is the lowest score such that every band [t, 1] with t >= high is at least target_precision
    counterfeit; `low` likewise from below for genuine. Where no score reaches the target, that side
    decides nothing (high = 1 or low = 0) rather than claim a precision it does not have.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_fake = np.asarray(labels) == 1
    high = _lowest_safe_cut(-scores, is_fake, target_precision)
    low = _lowest_safe_cut(scores, ~is_fake, target_precision)
    high = 1.0 if high is None else -high
    low = 0.0 if low is None else low
    if low > high:  # overlapping bands on tiny data: meet in the middle
        low = high = (low + high) / 2
    return Thresholds(low=float(low), high=float(high))


def _lowest_safe_cut(keys: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """Walking keys upward, the last key up to which the running precision never fell below target."""
    order = np.argsort(keys, kind="stable")
    precision = running_precision(positive[order])
    # Equal keys are decided together: only a cut after the last of a run of ties is a real cut.
    sorted_keys = keys[order]
    safe = None
    for index in np.flatnonzero(last_of_ties(sorted_keys)):
        if precision[index] < target:
            break
        safe = float(sorted_keys[index])
    return safe


def calibrate(logits: np.ndarray, labels: np.ndarray, target_precision: float, positive_index: int = 1):
    """-> (temperature, thresholds) fitted on one labelled set (validation)."""
    temperature = fit_temperature(logits, labels)
    scores = softmax_scores(logits, temperature, positive_index)
    return temperature, choose_thresholds(scores, labels, target_precision)


def calibration_problems(logits: np.ndarray, labels: np.ndarray, temperature: float, thresholds: Thresholds,
                         target_precision: float, positive_index: int = 1) -> list[str]:
    """Plain sentences for what a calibration on val shows a user must know before trusting the model:
    it separates nothing, its scores are stuck near 0.5, or one verdict can never be given. [] when none."""
    scores = softmax_scores(logits, temperature, positive_index)
    auc = roc_auc(scores, labels)
    problems = []
    if not auc >= 0.6:  # NaN too: one class missing means nothing was measured
        problems.append(f"the model separates nothing on val: ROC-AUC {auc:.2f} (0.5 is chance)")
    farthest = float(np.abs(scores - 0.5).max(initial=0))
    if temperature >= _TEMPERATURES[-1] * 0.999 or farthest < 0.01:
        problems.append(f"the calibrated scores all lie within {farthest:.2g} of 0.5 "
                        f"(temperature {temperature:.3g}, the search's bound is {_TEMPERATURES[-1]:.0f}): the "
                        "model has learned no usable signal")
    if thresholds.high >= 1.0:
        problems.append(f"no score reaches the target precision {target_precision} for counterfeit on val: the model "
                        "will never answer 'counterfeit' (lower --target-precision, or add data)")
    if thresholds.low <= 0.0:
        problems.append(f"no score reaches the target precision {target_precision} for genuine on val: the model "
                        "will never answer 'genuine' (lower --target-precision, or add data)")
    return problems
