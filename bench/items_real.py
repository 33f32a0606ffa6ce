"""Benchmark: an item, not a photo. Do several photos of one item leave fewer items undecided than single
photos, at the same decided precision (>= 99%)? Measured on real photos (datasets/real-grocery, built from
../shared/real by `counterfeit data real`; see bench/real_photos.py), or any DATA folder (--data).

1. A COPY of the model (--model, default runs/real-grocery/model.onnx, left unchanged) is recalibrated with
   item calibration on DATA/val (`counterfeit calibrate --items`): OUT/model.onnx.
2. Every test photo is answered as the HTTP service answers it (quality gate, registration, model,
   thresholds: evaluation.robustness.judge); cached in OUT/test-answers.json (delete it to redo).
3. Items are formed from the test photos of one product (2 to 4 photos; counterfeit items: one edited photo
   among genuines, i.e. the project's edits on one side only: inference.items.form_items) and judged as
   POST /v1/items judges them (api.items_service.judge: retakes, mixed products, the combination).
4. Undecided (inconclusive or retake) shares of photos and items, (a) with the model's thresholds as served
   and (b) with the thresholds that reach >= 99% precision for both decided verdicts on the test answers
   themselves (the same precision for photos and items, the best either can do), for the calibrated item
   rule and for the worst-photo rule (models without item calibration).

Printed, and written to OUT/items-report.json. Without the data this says so and exits 0.
Run: .venv/bin/python bench/items_real.py [--data DATA] [--model MODEL.onnx] [--out OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from api.items_service import judge
from api.schemas import ItemPhoto
from evaluation.robustness import Outcome, percent
from inference.calibration import choose_thresholds
from inference.classes import COUNTERFEIT, GENUINE, INCONCLUSIVE, RETAKE
from inference.items import COMBINER_KEY, combiner_of, form_items, item_thresholds
from inference.layout import list_labelled
from inference.metadata import Thresholds
from inference.metrics import roc_auc
from inference.predictor import Prediction, Predictor, verdict_for

ROOT = Path(__file__).resolve().parent.parent
TARGET_PRECISION = 0.99


def calibrated_copy(model: Path, data: Path, out: Path) -> Path:
    """OUT/model.onnx: the model with item calibration on DATA/val (the original file is not touched)."""
    from training.calibrate import recalibrate

    copy = out / "model.onnx"
    if not copy.is_file():
        out.mkdir(parents=True, exist_ok=True)
        recalibrate(model, data / "val", copy, items=True)
    return copy


def test_answers(data: Path, predictor: Predictor, cache: Path) -> list[tuple[str, Outcome]]:
    """[(product folder, the service's answer)] for every test photo, cached for this model version."""
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["version"] == predictor.metadata.version:
            return [(product, Outcome(**{**fields, "reasons": tuple(fields["reasons"])}))
                    for product, fields in saved["answers"]]
    from real_photos import answers  # bench/ is the script's folder

    samples = list_labelled(data / "test")
    found = list(zip([s.product for s in samples], answers(samples, predictor)))
    cache.write_text(json.dumps({"version": predictor.metadata.version,
                                 "answers": [(product, asdict(o)) for product, o in found]}))
    return found


class Judge:
    """What api.items_service.judge reads of a predictor: as served (thresholds None), or with `thresholds`
    for photos and items alike; without the item calibration for the worst-photo rule."""

    def __init__(self, predictor: Predictor, thresholds: Thresholds | None, calibrated: bool) -> None:
        metrics = {k: v for k, v in predictor.metadata.metrics.items() if calibrated or k != COMBINER_KEY}
        if thresholds is not None and COMBINER_KEY in metrics:
            metrics[COMBINER_KEY] = {**metrics[COMBINER_KEY], "thresholds": thresholds.to_dict()}
        self.metadata = replace(predictor.metadata, thresholds=thresholds or predictor.metadata.thresholds,
                                metrics=metrics)
        self.thresholds = item_thresholds(self.metadata.thresholds, combiner_of(metrics))

    def decide(self, score: float) -> Prediction:
        return Prediction(score, verdict_for(score, self.metadata.thresholds))


def photo_outcomes(answers: list[tuple[str, Outcome]], thresholds: Thresholds) -> list[Outcome]:
    """Each photo's verdict under `thresholds`; unscored photos (retake, unreadable) stay retake."""
    return [replace(o, verdict=RETAKE if o.score is None else verdict_for(o.score, thresholds)) for _, o in answers]


def as_item_photo(outcome: Outcome, judge_with: Judge) -> ItemPhoto:
    """The answer as POST /v1/items holds it for one photo (image details are not needed to judge)."""
    meta = judge_with.metadata
    return ItemPhoto(verdict=outcome.verdict, score=outcome.score, product=outcome.product,
                     thresholds=meta.thresholds.to_dict(), model={"name": meta.name, "version": meta.version},
                     image={"sha256": "", "width": 0, "height": 0},
                     quality={"ok": outcome.score is not None, "reasons": list(outcome.reasons),
                              "message": ", ".join(outcome.reasons), "measures": {}})


def item_outcomes(answers: list[tuple[str, Outcome]], judge_with: Judge, seed: int) -> list[Outcome]:
    """Items of 2-4 test photos of one product (the same items for every rule and thresholds: the seed),
    each judged as POST /v1/items judges it."""
    groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    decided = photo_outcomes(answers, judge_with.metadata.thresholds)
    for (product, _), outcome in zip(answers, decided):
        groups[product][outcome.label].append(outcome)
    items, labels = form_items(dict(groups), seed=seed, per_photo=1)
    judged = []
    for photos, label in zip(items, labels):
        item = judge([as_item_photo(photo, judge_with) for photo in photos], judge_with)
        judged.append(Outcome(label, item.verdict, item.score, reasons=(item.reason,) if item.reason else ()))
    return judged


def figures(outcomes: list[Outcome], thresholds: Thresholds) -> dict:
    """Undecided share (inconclusive or retake) and the precision of each decided verdict."""
    verdicts = [o.verdict for o in outcomes]
    labels = np.array([o.label for o in outcomes])
    row = {"n": len(outcomes), "undecided": float(np.mean([v in (INCONCLUSIVE, RETAKE) for v in verdicts])),
           "retake": float(np.mean([v == RETAKE for v in verdicts])), "thresholds": thresholds.to_dict()}
    for name, label in ((GENUINE, 0), (COUNTERFEIT, 1)):
        decided = np.array([v == name for v in verdicts])
        row[f"{name}_decided"] = int(decided.sum())
        row[f"{name}_precision"] = float((labels[decided] == label).mean()) if decided.any() else float("nan")
    return row


def same_precision(outcomes: list[Outcome]) -> Thresholds:
    """The thresholds that reach TARGET_PRECISION for both verdicts on these answers (retakes excluded)."""
    scored = [o for o in outcomes if o.score is not None]
    return choose_thresholds(np.array([o.score for o in scored]), np.array([o.label for o in scored]), TARGET_PRECISION)


def auc(outcomes: list[Outcome]) -> float:
    scored = [o for o in outcomes if o.score is not None]
    return roc_auc(np.array([o.score for o in scored]), np.array([o.label for o in scored]))


def measure(answers: list[tuple[str, Outcome]], predictor: Predictor, seed: int) -> dict:
    """Per rule: figures with the served thresholds, and with thresholds fitted to >= 99% precision on these
    answers (refitted twice for items: a counterfeit photo's own verdict depends on the thresholds)."""
    rules = {"photos": lambda t: photo_outcomes(answers, t or predictor.metadata.thresholds),
             "items (calibrated)": lambda t: item_outcomes(answers, Judge(predictor, t, True), seed),
             "items (worst photo)": lambda t: item_outcomes(answers, Judge(predictor, t, False), seed)}
    served = {"photos": predictor.metadata.thresholds, "items (calibrated)": Judge(predictor, None, True).thresholds,
              "items (worst photo)": Judge(predictor, None, False).thresholds}
    report = {}
    for name, outcomes_under in rules.items():
        as_served = outcomes_under(None)
        fitted = same_precision(as_served)
        for _ in range(2):
            fitted = same_precision(outcomes_under(fitted))
        report[name] = {"served": figures(as_served, served[name]), "roc_auc": auc(as_served),
                        "same_precision": figures(outcomes_under(fitted), fitted)}
    return report


def print_report(report: dict) -> None:
    print(f"{'':<22} {'n':>6} {'AUC':>6} | served: {'undecided':>9} {'retake':>7} {'P(gen)':>7} {'P(cf)':>7} "
          f"| at >= {TARGET_PRECISION:.0%} precision: {'undecided':>9} {'gen':>5} {'cf':>5}")
    for name, row in report["rules"].items():
        s, p = row["served"], row["same_precision"]
        print(f"{name:<22} {s['n']:>6} {row['roc_auc']:>6.3f} | {percent(s['undecided']):>17} "
              f"{percent(s['retake']):>7} {percent(s['genuine_precision']):>7} {percent(s['counterfeit_precision']):>7} "
              f"| {percent(p['undecided']):>28} {p['genuine_decided']:>5} {p['counterfeit_decided']:>5}")
    photos = report["rules"]["photos"]["same_precision"]["undecided"]
    items = report["rules"]["items (calibrated)"]["same_precision"]["undecided"]
    ratio = items / photos if photos else float("nan")
    print(f"undecided items / undecided photos at the same precision: {ratio:.2f} (goal <= 0.50)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "datasets" / "real-grocery")
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "real-grocery" / "model.onnx")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "real-grocery-items")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.data / "test").is_dir() or not args.model.is_file():
        print(f"no {args.data}/test or {args.model}: build them first (make bench-real); nothing measured")
        return 0
    predictor = Predictor(calibrated_copy(args.model, args.data, args.out))
    answers = test_answers(args.data, predictor, args.out / "test-answers.json")
    report = {"data": str(args.data), "model": str(args.model), "items_model": str(args.out / "model.onnx"),
              "item_combiner": predictor.metadata.metrics.get(COMBINER_KEY), "rules": measure(answers, predictor, args.seed)}
    print_report(report)
    (args.out / "items-report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
