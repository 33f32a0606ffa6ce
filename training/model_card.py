"""Write a model card (Markdown) for a run: what the model is, how it was trained, what was measured.

    python -m training.model_card RUN --out MODEL_CARD.md

Every figure comes from the run's own files (RUN/config.json, RUN/metrics.jsonl, RUN/report/metrics.json)
and the model file's metadata; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inference.predictor import Predictor
from inference.provenance import demo_notice

DEMO_PURPOSE = (
    "A **demo**: trained on synthetic product-packaging photos from `counterfeit synth` (seed 0), where "
    "counterfeits differ from genuine items only in printed details. It shows the whole product working "
    "on a fresh machine. It has never seen a real product: do not use its verdicts on real goods; train "
    "on your own photos instead (README, 'ML engineer')."
)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _classifier_lines(meta, config) -> list[str]:
    return [f"- Architecture: torchvision `{config['arch']}`, weights `{config['weights']}`, 2 classes "
            f"(`genuine`, `counterfeit`)",
            f"- Input: {meta.preprocess.width}x{meta.preprocess.height} px, whole frame letterboxed, ImageNet "
            "normalisation"]


def _reference_lines(meta) -> list[str]:
    products = ", ".join(f"`{r.product}`" for r in meta.references)
    return ["- Recipe: reference. Each photo is registered (SIFT keypoints, RANSAC homography) to the genuine "
            f"reference of one of its products ({products}) and compared location by location with that "
            "product's registered genuine photos: frozen ImageNet EfficientNet-Lite0 features, pixels, and the "
            "colours left once the photo's own light is fitted",
            f"- Input: {meta.preprocess.width}x{meta.preprocess.height} px in the product's reference frame; a "
            "photo showing none of the products is answered `retake` (not recognised)"]


def _comparator_lines(meta) -> list[str]:
    products = ", ".join(f"`{r.product}`" for r in meta.references)
    head = meta.metrics.get("comparator_head") or {}
    return ["- Recipe: comparator. Each photo is registered (SIFT keypoints, RANSAC homography) to the genuine "
            f"reference of one of its products ({products}) and compared with that product's enrolled genuine "
            "photos (hue over the print; frozen ImageNet EfficientNet-Lite0 features, colour and chromaticity "
            "per location, against the nearest genuines) by a head trained once on real photo pairs of "
            f"{len(head.get('products', []))} other products ({head.get('pairs', '?')} pairs, from "
            f"`{head.get('data', '?')}`); products are enrolled, not trained",
            f"- Input: {meta.preprocess.width}x{meta.preprocess.height} px in the product's reference frame; a "
            "photo showing none of the products is answered `retake` (not recognised)"]


def _classifier_fit(config, epochs, best) -> list[str]:
    return [f"- Data: `{config['data']}`; {len(epochs)} epochs, batch {config['batch_size']}, {config['optimizer']} "
            f"lr {config['lr']}, seed {config['seed']}",
            f"- Best epoch {best.get('epoch')}: val loss {_fmt(best.get('val_loss'))}, val accuracy "
            f"{_fmt(best.get('val_accuracy'))}, val ROC-AUC {_fmt(best.get('val_roc_auc'))}"]


def _reference_fit(config, best) -> list[str]:
    what = ("enrolled from the train genuines" if config["recipe"] == "comparator"
            else "statistics from the train genuines")
    return [f"- Data: `{config['data']}`: {what} (counterfeits are not needed), calibrated on val "
            f"({best.get('val_counterfeits', 'real')} counterfeits); seed {config['seed']}",
            f"- Val ROC-AUC {_fmt(best.get('roc_auc'))}, accuracy {_fmt(best.get('accuracy'))}; train genuines "
            f"left out (not registered) {best.get('train_genuines_left_out')}"]


def _warning_lines(warnings: list[str]) -> list[str]:
    """What calibration on val found wrong, first, where nobody can miss it."""
    if not warnings:
        return []
    return ["## Warnings: read before use", *(f"- **{w[0].upper()}{w[1:]}.**" for w in warnings), ""]


def _provenance_lines(record: dict) -> list[str]:
    """What the file says it was trained and validated on (inference/provenance.py), as GET /v1/model does."""
    lines = []
    for key, words in (("trained_on", "Trained on"), ("validated_on", "Validated on")):
        part = record.get(key) or {}
        lines.append(f"- {words}: `{part.get('data', '?')}`: {part.get('photos', 'unknown')} photos "
                     f"({part.get('genuine', '?')} genuine, {part.get('counterfeit', '?')} counterfeit; "
                     f"counterfeits {part.get('counterfeits', 'unknown')}), made by {part.get('made_by', 'unknown')}")
    notice = demo_notice(record)
    return lines + ([f"- **{notice}**"] if notice else [])


def render(run: Path, purpose: str = "") -> str:
    meta = Predictor(run / "model.onnx").metadata
    config = meta.train_config
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    report = json.loads((run / "report" / "metrics.json").read_text())
    best = meta.metrics
    lines = [
        f"# Model card: {meta.name} (version {meta.version})",
        "",
        *([purpose, ""] if purpose else []),
        *_warning_lines(meta.metrics.get("warnings", [])),
        "## Model",
        *({"reference": _reference_lines, "comparator": _comparator_lines}[config["recipe"]](meta)
          if meta.references else _classifier_lines(meta, config)),
        f"- Calibration: temperature {meta.temperature:.3f}; thresholds low {meta.thresholds.low:.4f}, "
        f"high {meta.thresholds.high:.4f} (target precision {config['target_precision']} per class on val)",
        "",
        "## Training",
        *(_reference_fit(config, best) if meta.references else _classifier_fit(config, epochs, best)),
        *_provenance_lines(meta.provenance),
        "",
        f"## Measured on the held-out test split (n = {report['n']})",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in ("roc_auc", "pr_auc", "inconclusive_rate", "accuracy_decided", "precision_decided",
                "recall_decided", "ece"):
        lines.append(f"| {key} | {_fmt(report.get(key))} |")
    lines += ["", "Reproduce: `make demo-model` (fixed seeds; CPU).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a model card for a training run.")
    parser.add_argument("run", type=Path, help="RUN folder (with model.onnx, metrics.jsonl, report/metrics.json)")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    parser.add_argument("--demo", action="store_true", help="say that this is the synthetic-data demo model")
    args = parser.parse_args()
    args.out.write_text(render(args.run, DEMO_PURPOSE if args.demo else ""))


if __name__ == "__main__":
    main()
