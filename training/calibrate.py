"""`counterfeit calibrate MODEL.onnx DATA/val --out NEW.onnx`: refit temperature and thresholds on new
labelled photos without retraining. The graph is untouched; only the metadata (and so the version) change."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from inference.calibration import calibrate, calibration_problems
from inference.layout import DataError, Sample, list_labelled, resolve_labelled
from inference.metadata import ModelMetadata
from inference.predictor import Predictor, stacked
from training.prepared import prepared_samples
from training.stamp import stamp_metadata


def labelled_logits(predictor: Predictor, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and labels for labelled files; photos a reference model does not recognise are left out."""
    prepared, labels, _ = prepared_samples(samples, predictor.spec, predictor.metadata.references)
    if not prepared:
        raise DataError("The model recognised none of the photos as one of its products: nothing to calibrate on.")
    return predictor.logits(*stacked(prepared)), labels


def recalibrate(model: Path, data: Path, out: Path, target_precision: float | None = None) -> ModelMetadata:
    """Write `out`: `model` with temperature and thresholds fitted on the labelled folder `data`."""
    predictor = Predictor(model)
    samples = list_labelled(resolve_labelled(data, "val"))
    logits, labels = labelled_logits(predictor, samples)
    target = target_precision or predictor.metadata.train_config.get("target_precision", 0.99)
    temperature, thresholds = calibrate(logits, labels, target)
    warnings = calibration_problems(logits, labels, temperature, thresholds, target)
    metrics = {key: value for key, value in predictor.metadata.metrics.items() if key != "warnings"}
    metadata = replace(predictor.metadata, temperature=temperature, thresholds=thresholds,
                       metrics={**metrics, "calibrated_on": str(data), "calibration_n": len(labels),
                                "calibration_target_precision": target, **({"warnings": warnings} if warnings else {})})
    proto = onnx.load_from_string(model.read_bytes())
    metadata = stamp_metadata(proto, metadata)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    try:
        Predictor(tmp)  # the rewritten file must load and describe itself before it replaces anything
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return metadata
