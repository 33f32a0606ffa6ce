"""Benchmark: how few genuine photos are enough to add a product to the catalogue (issue 16), on real photos.

For each chosen product of the real-grocery model (runs/real-grocery/model.onnx, built by
bench/real_photos.py from ../shared/real): the product is taken out and added back as `counterfeit catalogue
add` adds it (training/catalogue.py: reference = the best of the given photos, statistics from them, its own
held-out standardisation; every other product and the shared calibration untouched) from its first N
genuine photos (train, then val, by name; N = 3, 5, 10, 30 or all it has). Its test photos, the genuines and
the project's edited counterfeits of them (datasets/real-grocery/test), are then scored: ROC-AUC, the share
left undecided between the model's thresholds, and the precision of the decided verdicts. The row `trained`
is the model as trained (all train photos, calibrated on val) for comparison.

Test photos are those the trained model registers to the product; each is registered to the new reference
only (the other products' references are unchanged, so which photos reach this product is not what is
measured). Everything stays in memory: runs/ is only read. Scores are torch's (export reproduces them within
1e-4). About 2 minutes per product on 2 idle cores.

Run: .venv/bin/python bench/catalogue_real.py [--products A,B,C] [--counts 3,5,10,30] [--model M --data DATA]
(e.g. --model runs/synth-h0/model.onnx --data datasets/synth-h0 --products product-c: synthetic packages,
where the trained model tells counterfeits, so the curve shows what the photo count costs)
Without the data or model it says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from inference.align import MIN_INLIERS, best_match, keypoints, match, warp
from inference.layout import image_files
from inference.metrics import roc_auc
from inference.predictor import decode, softmax_scores
from inference.preprocess import letterbox, normalise
from training.catalogue import fit_product, held_out_raw, read_model, standardise, with_rows
from training.recipes.reference.fit import MASK_PHOTOS, best_reference

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "runs" / "real-grocery" / "model.onnx"
DATA = ROOT / "datasets" / "real-grocery"
# One product of a one-sided package, and the front of two cartons photographed from several sides.
PRODUCTS = ("Arla-Sour-Cream", "Oatly-Natural-Oatghurt-1", "God-Morgon-Orange-Red-Grapefruit-Juice")
COUNTS = (3, 5, 10, 30)
STANDARDISATIONS = ("own", "shared")  # the added product's: from its held-out photos (the default), the model's


def folder_of(product: str, data: Path) -> str:
    """Products are named after their dataset folder, with -N for each side registration found in it."""
    return product if (data / "train" / "genuine" / product).is_dir() else product.rsplit("-", 1)[0]


def photos(paths: list[Path], spec) -> list[tuple]:
    """(letterboxed frame, keypoints) of each photo."""
    frames = [letterbox(decode(path.read_bytes(), spec).image, spec) for path in paths]
    return [(frame, keypoints(frame)) for frame in frames]


def on_product(described: list[tuple], references: list, product: str, data: Path) -> list[tuple]:
    """The photos the trained model registers to `product` (among its folder's sides)."""
    sides = [r for r in references if folder_of(r.product, data) == folder_of(product, data)]
    found = [(item, best_match(*item[1], sides)) for item in described]
    return [item for item, hit in found if hit is not None and sides[hit.product].product == product]


@torch.no_grad()
def scored(model, index: int, frames: list, temperature: float) -> np.ndarray:
    if not frames:
        return np.zeros(0)
    spec_inputs = torch.from_numpy(np.stack(frames))
    logits = torch.cat([model(spec_inputs[i : i + 8], torch.full((len(spec_inputs[i : i + 8]),), index))[0]
                        for i in range(0, len(spec_inputs), 8)])
    return softmax_scores(logits.numpy(), temperature, 1)


def figures(genuine: np.ndarray, counterfeit: np.ndarray, thresholds) -> dict:
    scores, labels = np.r_[genuine, counterfeit], np.r_[np.zeros(len(genuine)), np.ones(len(counterfeit))]
    decided = (scores <= thresholds.low) | (scores >= thresholds.high)
    right = decided & ((scores >= thresholds.high) == (labels == 1))
    return {"auc": roc_auc(scores, labels) if len(genuine) and len(counterfeit) else float("nan"),
            "undecided": 1 - decided.mean(), "precision": right.sum() / decided.sum() if decided.any() else float("nan"),
            "genuine_undecided": 1 - decided[labels == 0].mean(), "n": f"{len(genuine)}+{len(counterfeit)}"}


def registered_to(reference, described: list[tuple], spec) -> list[np.ndarray]:
    inputs = []
    for frame, points in described:
        homography, agreeing = match(reference, *points)
        if homography is not None and len(agreeing) >= MIN_INLIERS:
            inputs.append(warp(frame, homography))
    return inputs


def bench_product(model, meta, product: str, counts: list[int], data: Path) -> list[tuple]:
    spec, names = meta.preprocess, [r.product for r in meta.references]
    folder, index = folder_of(product, data), names.index(product)
    pool = on_product(photos(image_files(data / "train" / "genuine" / folder)[: max(counts)] +
                             image_files(data / "val" / "genuine" / folder), spec)[: max(counts)],
                      meta.references, product, data)
    test = {label: on_product(photos(image_files(data / "test" / label / folder), spec), meta.references, product,
                              data) for label in ("genuine", "counterfeit")}
    trained = {label: scored(model, index, [normalise(warp(f, best_match(*k, [meta.references[index]]).homography),
                                                      spec) for f, k in items], meta.temperature)
               for label, items in test.items()}
    rows = [("trained", figures(trained["genuine"], trained["counterfeit"], meta.thresholds))]
    print_row(product, *rows[-1])
    others = [(model, i) for i in range(len(names)) if i != index]
    for count in counts:
        given = pool[:count]
        _, reference = best_reference(product, [k for _, k in given][: MASK_PHOTOS + 1])
        frames = registered_to(reference, given, spec)
        if len(frames) < 3:
            rows.append((f"{count}", {"note": f"only {len(frames)} register to their reference"}))
            print_row(product, *rows[-1])
            continue
        fitted = fit_product(model, meta, product, frames, standardisation="shared")
        raw = held_out_raw(model, meta, product, frames)
        inputs = {label: [normalise(f, spec) for f in registered_to(reference, items, spec)]
                  for label, items in test.items()}
        for how in STANDARDISATIONS:
            standardise(fitted, model, raw if how == "own" else None)
            grown = with_rows(model, meta, [*others, (fitted, 0)])
            got = {label: scored(grown, len(others), frames_in, meta.temperature) for label, frames_in in inputs.items()}
            label = f"{len(given)}{' (all)' if count > len(pool) else ''} {how}"
            rows.append((label, {**figures(got["genuine"], got["counterfeit"], meta.thresholds), "used": len(frames)}))
            print_row(product, *rows[-1])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default=",".join(PRODUCTS))
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--data", type=Path, default=DATA, help="the DATA folder the model was trained on")
    args = parser.parse_args()
    if not args.model.is_file() or not args.data.is_dir():
        print(f"skipped: needs {args.model} and {args.data} (bench/real_photos.py builds them from ../shared/real)")
        return 0
    torch.manual_seed(0)
    model, predictor = read_model(args.model)
    meta = predictor.metadata
    print(f"model {meta.name} ({len(meta.references)} products), thresholds low {meta.thresholds.low:.3f} "
          f"high {meta.thresholds.high:.3f}")
    print(f"{'product':42s} {'photos':16s} {'used':>4s} {'test g+c':>8s} {'AUC':>6s} {'undecided':>9s} "
          f"{'genuine und.':>12s} {'precision':>9s}")
    for product in args.products.split(","):
        bench_product(model, meta, product, [int(c) for c in args.counts.split(",")], args.data)
    return 0


def print_row(product: str, label: str, row: dict) -> None:
    if "note" in row:
        print(f"{product:42s} {label:16s} {row['note']}", flush=True)
        return
    print(f"{product:42s} {label:16s} {row.get('used', ''):>4} {row['n']:>8s} {row['auc']:6.3f} "
          f"{row['undecided']:9.1%} {row['genuine_undecided']:12.1%} {row['precision']:9.1%}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
