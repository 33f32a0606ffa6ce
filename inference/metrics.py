"""Every classification and calibration figure, in numpy (no scikit-learn needed to serve or evaluate).

Counterfeit (label 1) is the positive class throughout, and a score is the calibrated probability that
the item is counterfeit, 0..1. Evaluation, the HTML report, calibration, the robustness check, training
and the benchmarks all compute their figures here, so that a figure means the same wherever it is shown.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.classes import CLASSES, COUNTERFEIT, INCONCLUSIVE, SCORED_VERDICTS

ECE_BINS = 10  # equal-width score bins of the calibration error and of the reliability diagram


# ---------------------------------------------------------------- shares and ratios


def ratio(numerator, denominator) -> float:
    """numerator / denominator; NaN when the denominator is 0 (the figure is undefined, not 0)."""
    return float(numerator / denominator) if denominator else float("nan")


def share(flags: Sequence[bool]) -> float:
    """The share of true flags; NaN for none at all."""
    return sum(flags) / len(flags) if len(flags) else float("nan")


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predicted) == np.asarray(labels))) if len(labels) else float("nan")


# ---------------------------------------------------------------- ranking: ROC and precision-recall


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties 1/2.

    NaN when one class is absent: the AUC is undefined then, and 0.5 would be a made-up figure.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank (Mann-Whitney U needs that)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def running_precision(hits: np.ndarray) -> np.ndarray:
    """Precision of the first k items for every k, items ranked best first: hits (bool) -> (n,) 0..1."""
    return np.cumsum(hits) / np.arange(1, len(hits) + 1)


def last_of_ties(ranked: np.ndarray) -> np.ndarray:
    """True at the last position of each run of equal sorted values: a threshold moves all of a run
    across at once, so only those positions are real cuts."""
    return np.r_[ranked[1:] != ranked[:-1], True] if len(ranked) else np.zeros(0, bool)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """PR-AUC as average precision (counterfeit = positive): mean precision at each true positive."""
    positive = np.asarray(labels) == 1
    if not positive.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = positive[order]
    return float(running_precision(hits)[hits].mean())


def cumulative_hits(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) when flagging every score >= t, for each distinct t, highest first."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels) == 1
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    cuts = last_of_ties(ranked)
    return np.cumsum(hits)[cuts], np.cumsum(~hits)[cuts]


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1). ValueError unless both classes occur."""
    tp, fp = cumulative_hits(scores, labels)
    if not len(tp) or tp[-1] == 0 or fp[-1] == 0:
        raise ValueError("A ROC curve needs both genuine and counterfeit images.")
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def precision_recall_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold that flags one more counterfeit, highest threshold
    first. ValueError without a counterfeit."""
    tp, fp = cumulative_hits(scores, labels)
    if not len(tp) or tp[-1] == 0:
        raise ValueError("A precision-recall curve needs at least one counterfeit image.")
    # Only thresholds that add a counterfeit move recall; the others would draw spurious vertical dips.
    moves = np.diff(np.r_[0, tp]) > 0
    return tp[moves] / tp[-1], tp[moves] / (tp[moves] + fp[moves])


def curve_area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area (np.trapezoid exists only from numpy 2.0; we support 1.26)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


# ---------------------------------------------------------------- calibration


def score_bins(scores: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Index of the equal-width score bin of each score; a score of exactly 1 goes in the last bin."""
    return np.minimum((np.asarray(scores) * bins).astype(int), bins - 1)


def _per_bin(scores: np.ndarray, labels: np.ndarray, bins: int) -> tuple[list, list, list]:
    """(mean score, observed counterfeit rate, count) of each non-empty bin, lowest bin first."""
    bin_of = score_bins(scores, bins)
    used = [bin_of == b for b in range(bins) if (bin_of == b).any()]
    return [scores[b].mean() for b in used], [labels[b].mean() for b in used], [b.sum() for b in used]


def reliability_bins(scores, labels, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean score, observed counterfeit rate, count) per non-empty bin: exactly what the ECE averages over,
    so a reliability diagram and the ECE figure beside it describe the same thing."""
    mean_score, observed, counts = _per_bin(np.asarray(scores, dtype=np.float64), np.asarray(labels), bins)
    return np.array(mean_score), np.array(observed), np.array(counts)


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |observed counterfeit rate - mean score| over equal-width score bins, weighted by bin size."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if len(scores) == 0:
        return float("nan")
    gaps = [abs(rate - mean) * count for mean, rate, count in zip(*_per_bin(scores, labels, bins))]
    return float(sum(gaps) / len(scores))


# ---------------------------------------------------------------- verdicts


def decision_metrics(verdicts: np.ndarray, labels: np.ndarray) -> dict:
    """Inconclusive share, accuracy/precision/recall on the decided verdicts (counterfeit = positive), and
    the confusion matrix {true class: {scored verdict: images}}."""
    decided = verdicts != INCONCLUSIVE
    said_fake, is_fake = verdicts == COUNTERFEIT, np.asarray(labels) == 1
    confusion = {truth: {v: int(((is_fake == (truth == COUNTERFEIT)) & (verdicts == v)).sum())
                         for v in SCORED_VERDICTS} for truth in CLASSES}
    return {
        "inconclusive_rate": float(1 - decided.mean()) if len(verdicts) else float("nan"),
        "accuracy_decided": ratio(((said_fake == is_fake) & decided).sum(), decided.sum()),
        "precision_decided": ratio((said_fake & is_fake).sum(), said_fake.sum()),
        "recall_decided": ratio((said_fake & is_fake).sum(), (decided & is_fake).sum()),
        "confusion": confusion,
    }


SMALL_SAMPLE = 30  # photos of a class below which a figure is reported with its bootstrap interval


def bootstrap_interval(scores: np.ndarray, labels: np.ndarray, statistic=None, rounds: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of `statistic(scores, labels)` (default ROC-AUC), resampling each
    class on its own so that every resample has both; NaN, NaN when a class is empty."""
    statistic = statistic or roc_auc
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    classes = [np.flatnonzero(labels == value) for value in (0, 1)]
    if any(len(members) == 0 for members in classes):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        chosen = np.concatenate([rng.choice(members, len(members)) for members in classes])
        values.append(statistic(scores[chosen], labels[chosen]))
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
