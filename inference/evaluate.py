"""`counterfeit evaluate`: a labelled folder through the serving predictor -> honest metrics.

The scores come from the same Predictor (and so the same decoding, preprocessing, calibration and
thresholds) the server uses: what is measured is what is deployed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference.classes import COUNTERFEIT, GENUINE, INCONCLUSIVE
from inference.layout import Sample, list_labelled, resolve_labelled
from inference.metadata import Thresholds
from inference.metrics import roc_auc
from inference.predictor import Predictor, verdict_for
from inference.screen import screen_files

ECE_BINS = 10


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """PR-AUC as average precision (counterfeit = positive): mean precision at each true positive."""
    positive = np.asarray(labels) == 1
    if not positive.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = positive[order]
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_k[hits].mean())


def score_bins(scores: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Index of the equal-width score bin of each score; a score of exactly 1 goes in the last bin."""
    return np.minimum((np.asarray(scores) * bins).astype(int), bins - 1)


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |observed counterfeit rate - mean score| over equal-width score bins, weighted by bin size."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if len(scores) == 0:
        return float("nan")
    bin_of = score_bins(scores, bins)
    gaps = [abs(labels[bin_of == b].mean() - scores[bin_of == b].mean()) * (bin_of == b).sum()
            for b in range(bins) if (bin_of == b).any()]
    return float(sum(gaps) / len(scores))


def decision_metrics(scores: np.ndarray, labels: np.ndarray, thresholds: Thresholds) -> dict:
    """Inconclusive share, and accuracy/precision/recall on the decided verdicts (counterfeit = positive)."""
    verdicts = np.array([verdict_for(float(s), thresholds) for s in scores])
    decided = verdicts != INCONCLUSIVE
    said_fake, is_fake = verdicts == COUNTERFEIT, np.asarray(labels) == 1
    confusion = {truth: {v: int(((is_fake == (truth == COUNTERFEIT)) & (verdicts == v)).sum())
                         for v in (GENUINE, COUNTERFEIT, INCONCLUSIVE)} for truth in (GENUINE, COUNTERFEIT)}
    return {
        "inconclusive_rate": float(1 - decided.mean()) if len(scores) else float("nan"),
        "accuracy_decided": _ratio(((said_fake == is_fake) & decided).sum(), decided.sum()),
        "precision_decided": _ratio((said_fake & is_fake).sum(), said_fake.sum()),
        "recall_decided": _ratio((said_fake & is_fake).sum(), (decided & is_fake).sum()),
        "confusion": confusion,
    }


def _ratio(numerator, denominator) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def summarize(scores: np.ndarray, labels: np.ndarray, thresholds: Thresholds) -> dict:
    return {
        "n": int(len(scores)),
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": average_precision(scores, labels),
        "ece": expected_calibration_error(scores, labels),
        **decision_metrics(scores, labels, thresholds),
    }


def evaluate_folder(path: str | Path, predictor: Predictor) -> dict:
    """Metrics for a labelled folder (or DATA root: its test/ split), overall and per product line."""
    samples = list_labelled(resolve_labelled(path, "test"))
    records = list(screen_files([s.path for s in samples], predictor))
    scored = [(s, r["score"]) for s, r in zip(samples, records) if "score" in r]
    errors = [{"path": r["path"], "error": r["error"]} for r in records if "error" in r]
    # A reference model answers 'retake' for a photo showing none of its products: listed and counted,
    # never scored as if it had been recognised.
    retakes = [{"path": r["path"], "reason": r["reason"]} for r in records if r.get("verdict") == "retake"]
    thresholds = predictor.metadata.thresholds
    metrics = _metrics_for(scored, thresholds)
    products = sorted({s.product for s, _ in scored})
    metrics["per_product"] = {p: _metrics_for([x for x in scored if x[0].product == p], thresholds) for p in products}
    model = predictor.metadata
    metrics.update(model={"name": model.name, "version": model.version},
                   thresholds=thresholds.to_dict(), errors=errors, retakes=retakes,
                   retake_rate=len(retakes) / len(records) if records else float("nan"))
    metrics["scores"] = [{"path": str(s.path), "label": s.label, "product": s.product, "score": v} for s, v in scored]
    return metrics


def _metrics_for(scored: list[tuple[Sample, float]], thresholds: Thresholds) -> dict:
    scores = np.array([v for _, v in scored], dtype=np.float64)
    labels = np.array([s.label for s, _ in scored], dtype=np.int64)
    return summarize(scores, labels, thresholds)


def write_report(metrics: dict, report_dir: Path) -> Path:
    """DIR/metrics.json (the per-image scores go to DIR/scores.jsonl)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = _nan_to_none({k: v for k, v in metrics.items() if k != "scores"})
    (report_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
    with (report_dir / "scores.jsonl").open("w") as out:
        for row in metrics["scores"]:
            out.write(json.dumps(row) + "\n")
    return report_dir / "metrics.json"


def _nan_to_none(value):
    """JSON has no NaN: an undefined metric (e.g. ROC-AUC with one class) is written as null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
