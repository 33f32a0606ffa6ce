"""`counterfeit calibrate MODEL.onnx DATA/val --out NEW.onnx [--items]`: refit temperature and thresholds
(and, with --items, the rule combining an item's photos) on new labelled photos without retraining. The graph is untouched; only the metadata (and so the version) change."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from inference.atomic import atomic_path
from inference.calibration import calibrate, calibration_problems, choose_thresholds
from inference.classes import CLASSES, COUNTERFEIT
from inference.items import COMBINER_KEY, Combiner, combine, fit_combiner, form_items
from inference.layout import DataError, Sample, list_labelled, resolve_labelled
from inference.metadata import ModelMetadata, Thresholds
from inference.predictor import Predictor, softmax_scores, stacked
from inference.provenance import describe_split
from training.prepared import prepared_samples
from training.stamp import stamp_metadata


def labelled_logits(predictor: Predictor, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and labels for labelled files; photos a reference model does not recognise are left out."""
    prepared, labels, _ = prepared_samples(samples, predictor.spec, predictor.metadata.references)
    if not prepared:
        raise DataError("The model recognised none of the photos as one of its products: nothing to calibrate on.")
    return predictor.logits(*stacked(prepared)), labels


def logits_by_product(predictor: Predictor, samples: list[Sample]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{product folder: (raw logits, labels)} of labelled files, unrecognised photos left out."""
    found = {}
    for product in sorted({sample.product for sample in samples}):
        group = [sample for sample in samples if sample.product == product]
        prepared, labels, _ = prepared_samples(group, predictor.spec, predictor.metadata.references)
        if prepared:
            found[product] = predictor.logits(*stacked(prepared)), labels
    if not found:
        raise DataError("The model recognised none of the photos as one of its products: nothing to calibrate on.")
    return found


def item_combiner(by_product: dict[str, tuple[np.ndarray, np.ndarray]], temperature: float,
                  thresholds: Thresholds, target_precision: float) -> Combiner:
    """The item rule (inference.items) fitted on items formed from each product's photos (calibrated
    scores), with item thresholds for `target_precision` on those items' scores."""
    scores = {product: softmax_scores(logits, temperature, CLASSES.index(COUNTERFEIT))
              for product, (logits, _) in by_product.items()}
    groups = {product: (scores[product][labels == 0], scores[product][labels == 1])
              for product, (_, labels) in by_product.items()}
    items, item_labels = form_items(groups)
    try:
        combiner = fit_combiner(items, item_labels)
    except ValueError as exc:
        raise DataError(f"{exc}: item calibration needs, per product folder, at least 2 genuine photos or a "
                        "genuine and a counterfeit one (DATA/val/{genuine,counterfeit}/PRODUCT/)") from exc
    item_scores = [combine(item, thresholds, combiner) for item in items]
    return replace(combiner, thresholds=choose_thresholds(np.array(item_scores), np.array(item_labels),
                                                          target_precision))


def recalibrate(model: Path, data: Path, out: Path, target_precision: float | None = None,
                items: bool = False) -> ModelMetadata:
    """Write `out`: `model` with temperature and thresholds fitted on the labelled folder `data`; with
    `items`, also the item rule (inference.items) on items formed from each product folder's photos."""
    predictor = Predictor(model)
    val = resolve_labelled(data, "val")
    samples = list_labelled(val)
    if items:
        by_product = logits_by_product(predictor, samples)
        logits = np.concatenate([logits for logits, _ in by_product.values()])
        labels = np.concatenate([labels for _, labels in by_product.values()])
    else:
        logits, labels = labelled_logits(predictor, samples)
    target = target_precision or predictor.metadata.train_config.get("target_precision", 0.99)
    temperature, thresholds = calibrate(logits, labels, target)
    warnings = calibration_problems(logits, labels, temperature, thresholds, target)
    # An item rule fitted on the old temperature's scores no longer fits: refitted with `items`, else dropped.
    metrics = {key: value for key, value in predictor.metadata.metrics.items()
               if key not in ("warnings", COMBINER_KEY)}
    if items:
        metrics[COMBINER_KEY] = item_combiner(by_product, temperature, thresholds, target).to_dict()
    validated_on = describe_split(val)
    metadata = replace(predictor.metadata, temperature=temperature, thresholds=thresholds,
                       provenance={**predictor.metadata.provenance, "validated_on": validated_on},
                       metrics={**metrics, "calibrated_on": str(data), "calibration_n": len(labels),
                                "calibration_target_precision": target, **({"warnings": warnings} if warnings else {})})
    proto = onnx.load_from_string(model.read_bytes())
    metadata = stamp_metadata(proto, metadata)
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        Predictor(tmp)  # the rewritten file must load and describe itself before it replaces anything
    return metadata
