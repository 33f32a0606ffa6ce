"""Benchmark: the default recipe on real phone photos (../shared/real/grocery-packages), not our synthetic ones.

1. `counterfeit data real` builds a DATA folder from the real photos of the known products: real genuine
   photos, and counterfeits made from other real photos by the project's print-plausible edits
   (datatools/edits.py; every edited photo's source is used nowhere else). A few products are kept out:
   photos of them are the unknown products a model must not call genuine.
2. `counterfeit train` fits the default recipe on it (genuines only) and calibrates on its val split.
3. Every test photo, and every photo of the unknown products, is answered as the HTTP service answers it
   (quality gate, registration, model, thresholds: evaluation.robustness.judge). Printed and written to
   RUN/real-report.json: per product, the genuines called counterfeit and undecided, the retakes, and the
   ROC-AUC of each kind of edit; for the unknown products, how many are answered retake (not recognised)
   and how many genuine. With --robustness, the benign photo changes too (`counterfeit evaluate
   --robustness`) on a sample of the test split: the first N genuines and N counterfeits of each product
   (--per-product, default 4; 23 changes of every test photo would take hours on 2 cores).

The real photos sit beside the project on development and CI machines only; without them this says so
and exits 0. Run: .venv/bin/python bench/real_photos.py [--retrain] [--robustness]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from evaluation.robustness import Gate, judge, percent, scored_auc, share
from inference.classes import CLASSES, COUNTERFEIT, GENUINE, INCONCLUSIVE, RETAKE, SCORED_VERDICTS
from inference.layout import Sample, list_labelled
from inference.predictor import MAX_BATCH, Predictor
from inference.quality import NOT_RECOGNISED

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "real" / "grocery-packages"
# Kept out of training: two sisters of known products (same brand layout, other colour) and two products
# of brands the model does not know.
UNKNOWN = ("God-Morgon-Apple-Juice", "Tropicana-Golden-Grapefruit", "Oatly-Oat-Milk", "Valio-Vanilla-Yoghurt")
SISTERS = {"God-Morgon-Apple-Juice": "God-Morgon", "Tropicana-Golden-Grapefruit": "Tropicana"}
GOALS = {"auc_min": 0.95, "genuine_as_counterfeit_max": 0.01, "genuine_undecided_max": 0.15,
         "unknown_retake_min": 0.99, "sister_genuine_max": 0.01}


def build(source: Path, data: Path, unknown: tuple[str, ...]) -> None:
    if (data / "manifest.csv").is_file():
        print(f"using {data} (delete it to rebuild)", file=sys.stderr)
        return
    from datatools.real_benchmark import build as build_dataset

    products = sorted(p.name for p in (source / "dataset" / "train" / "Packages").glob("*/*") if p.name not in unknown)
    build_dataset(source, data, seed=0, products=products)


def train(data: Path, run: Path, retrain: bool) -> None:
    if (run / "model.onnx").is_file() and not retrain:
        print(f"using {run}/model.onnx (--retrain to fit again)", file=sys.stderr)
        return
    subprocess.run([sys.executable, "-m", "counterfeit", "train", str(data), "--out", str(run)], check=True)


def answers(samples: list[Sample], predictor: Predictor) -> list:
    """The service's answer to each photo, in order."""
    from tqdm import tqdm

    found = []
    for start in tqdm(range(0, len(samples), MAX_BATCH), desc="answer", unit="batch", file=sys.stderr):
        chunk = samples[start : start + MAX_BATCH]
        found += judge(chunk, [s.path.read_bytes() for s in chunk], predictor, Gate())
    return found


def kinds(data: Path) -> dict[str, str]:
    """Test file (resolved path) -> its edit kind, from the dataset's manifest ('' for genuines)."""
    with (data / "manifest.csv").open() as rows:
        return {str((data / row["path"]).resolve()): row["kind"] for row in csv.DictReader(rows)}


def product_rows(samples: list[Sample], outcomes: list, kind_of: dict[str, str]) -> dict:
    """Per product (and 'all'): genuine figures and the ROC-AUC of each kind of edit against its genuines."""
    by_product = defaultdict(lambda: defaultdict(list))
    for sample, outcome in zip(samples, outcomes):
        kind = kind_of.get(str(sample.path.resolve()), "") if sample.label else GENUINE
        for product in (sample.product, "all"):
            by_product[product][kind or "unknown kind"].append(outcome)
    rows = {}
    for product, groups in sorted(by_product.items()):
        genuine = groups.pop(GENUINE, [])
        rows[product] = {"genuines": len(genuine), "genuine_as_counterfeit": share(genuine, COUNTERFEIT),
                         "genuine_undecided": share(genuine, INCONCLUSIVE), "genuine_retake": share(genuine, RETAKE),
                         "recognised_as_itself": _recognised(genuine, product),
                         "auc": {kind: scored_auc([*genuine, *fakes]) for kind, fakes in sorted(groups.items())},
                         "caught": {kind: share(fakes, COUNTERFEIT) for kind, fakes in sorted(groups.items())}}
    return rows


def _recognised(outcomes, product: str) -> float:
    """Share of the scored photos registered to their own product (a folder may hold several faces:
    'NAME-1', 'NAME-2')."""
    named = [o.product for o in outcomes if o.product is not None]
    if product == "all" or not named:
        return float("nan")
    return sum(name == product or name.rsplit("-", 1)[0] == product for name in named) / len(named)


def unknown_rows(source: Path, unknown: tuple[str, ...], predictor: Predictor) -> dict:
    """Real test photos of products the model was not fitted on: retake (not recognised), never genuine."""
    rows = {}
    for product in unknown:
        files = sorted((source / "dataset" / "test" / "Packages").glob(f"*/{product}/*.jpg"))
        outcomes = answers([Sample(path, 0, product) for path in files], predictor)
        rows[product] = {"photos": len(outcomes), "sister_of": SISTERS.get(product, ""),
                         "not_recognised": sum(NOT_RECOGNISED in o.reasons for o in outcomes) / max(len(outcomes), 1),
                         **{verdict: share(outcomes, verdict) for verdict in (RETAKE, *SCORED_VERDICTS)}}
    return rows


def print_tables(report: dict) -> None:
    rows = report["products"]
    edit_kinds = sorted({k for row in rows.values() for k in row["auc"]})
    print("| product | genuines | genuine→counterfeit | genuine undecided | genuine retake | recognised as itself | "
          + " | ".join(f"AUC {k}" for k in edit_kinds) + " |")
    print("| --- " * (6 + len(edit_kinds)) + "|")
    for product, row in rows.items():
        aucs = " | ".join("n/a" if row["auc"].get(k) is None or row["auc"][k] != row["auc"][k] else
                          f"{row['auc'][k]:.3f}" for k in edit_kinds)
        print(f"| {product} | {row['genuines']} | {percent(row['genuine_as_counterfeit'])} "
              f"| {percent(row['genuine_undecided'])} | {percent(row['genuine_retake'])} "
              f"| {percent(row['recognised_as_itself'])} | {aucs} |")
    print("\n| unknown product | photos | sister of | not recognised (retake) | genuine | counterfeit | inconclusive |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for product, row in report["unknown"].items():
        print(f"| {product} | {row['photos']} | {row['sister_of'] or '-'} | {percent(row['not_recognised'])} | "
              f"{percent(row[GENUINE])} | {percent(row[COUNTERFEIT])} | {percent(row[INCONCLUSIVE])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="the Grocery Store Dataset's packages")
    parser.add_argument("--data", type=Path, default=ROOT / "datasets" / "real-grocery")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "real-grocery")
    parser.add_argument("--retrain", action="store_true", help="fit again even when RUN/model.onnx exists")
    parser.add_argument("--robustness", action="store_true", help="also the benign photo changes (slow)")
    parser.add_argument("--per-product", type=int, default=4, help="--robustness: photos of each class per product")
    args = parser.parse_args()
    if not (args.source / "dataset").is_dir():
        print(f"real photos not found at {args.source}: nothing measured (they sit beside the project on "
              "development and CI machines only)")
        return 0
    build(args.source, args.data, UNKNOWN)
    train(args.data, args.run, args.retrain)
    predictor = Predictor(args.run / "model.onnx")
    samples = list_labelled(args.data / "test")
    report = {"model": predictor.metadata.version, "goals": GOALS,
              "products": product_rows(samples, answers(samples, predictor), kinds(args.data)),
              "unknown": unknown_rows(args.source, UNKNOWN, predictor)}
    (args.run / "real-report.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    print_tables(report)
    if args.robustness:
        sample = robustness_sample(samples, args.run / "robustness-sample", args.per_product)
        subprocess.run([sys.executable, "-m", "counterfeit", "evaluate", str(sample), "--model",
                        str(args.run / "model.onnx"), "--robustness", "--report", str(args.run / "robustness")],
                       check=True)
    return 0


def robustness_sample(samples: list[Sample], folder: Path, per_product: int) -> Path:
    """A labelled folder of links: of each product, its first `per_product` genuines and `per_product`
    counterfeits, each of another kind and another source photo, the kinds rotating across products."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    by_product = defaultdict(lambda: defaultdict(list))  # product -> kind ('' for genuine) -> samples
    for sample in samples:
        by_product[sample.product][sample.path.stem.rsplit("__", 1)[1] if sample.label else ""].append(sample)
    chosen = []
    for number, (product, by_kind) in enumerate(sorted(by_product.items())):
        kinds = sorted(kind for kind in by_kind if kind)
        chosen += by_kind[""][:per_product]
        chosen += [by_kind[kinds[(number + i) % len(kinds)]][i % len(by_kind[kinds[(number + i) % len(kinds)]])]
                   for i in range(per_product) if kinds]
    for sample in chosen:
        target = folder / CLASSES[sample.label] / sample.product / sample.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(sample.path.resolve())
    return folder


if __name__ == "__main__":
    sys.exit(main())
