"""`counterfeit evaluate`: a labelled folder through the serving predictor -> honest metrics.

The scores come from the same Predictor (and so the same decoding, preprocessing, calibration and
thresholds) the server uses: what is measured is what is deployed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluation.screen import screen_files
from inference.classes import RETAKE
from inference.layout import Sample, list_labelled, resolve_labelled
from inference.metadata import Thresholds
from inference.metrics import average_precision, decision_metrics, expected_calibration_error, ratio, roc_auc
from inference.predictor import Predictor, verdict_for


def summarize(scores: np.ndarray, labels: np.ndarray, thresholds: Thresholds) -> dict:
    """The figures of one set of scored photos, their verdicts given as the server gives them."""
    verdicts = np.array([verdict_for(float(s), thresholds) for s in scores])
    return {
        "n": int(len(scores)),
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": average_precision(scores, labels),
        "ece": expected_calibration_error(scores, labels),
        **decision_metrics(verdicts, labels),
    }


def evaluate_folder(path: str | Path, predictor: Predictor) -> dict:
    """Metrics for a labelled folder (or DATA root: its test/ split), overall and per product line."""
    samples = list_labelled(resolve_labelled(path, "test"))
    records = list(screen_files([s.path for s in samples], predictor))
    scored = [(s, r["score"]) for s, r in zip(samples, records) if "score" in r]
    errors = [{"path": r["path"], "error": r["error"]} for r in records if "error" in r]
    # A reference model answers 'retake' for a photo showing none of its products: listed and counted,
    # never scored as if it had been recognised.
    retakes = [{"path": r["path"], "reason": r["reason"]} for r in records if r.get("verdict") == RETAKE]
    thresholds = predictor.metadata.thresholds
    metrics = _metrics_for(scored, thresholds)
    products = sorted({s.product for s, _ in scored})
    metrics["per_product"] = {p: _metrics_for([x for x in scored if x[0].product == p], thresholds) for p in products}
    model = predictor.metadata
    metrics.update(model={"name": model.name, "version": model.version},
                   thresholds=thresholds.to_dict(), errors=errors, retakes=retakes,
                   retake_rate=ratio(len(retakes), len(records)))
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
