"""`counterfeit calibrate MODEL.onnx DATA/val --out NEW.onnx`: refit temperature and thresholds on new
labelled photos without retraining. The graph is untouched; only the metadata (and so the version) change."""

from __future__ import annotations

import os
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from inference.calibration import calibrate, calibration_problems
from inference.images import ImageError
from inference.layout import DataError, Sample, list_labelled, resolve_labelled
from inference.metadata import ModelMetadata
from inference.align import NotRecognised, Reference
from inference.predictor import Predictor, Prepared, decode, prepare, stacked
from inference.preprocess import PreprocessSpec
from training.export import stamp_metadata


def prepared_samples(samples: list[Sample], spec: PreprocessSpec, references: Sequence[Reference] = (),
                     progress: bool = False) -> tuple[list[Prepared], np.ndarray, int]:
    """Labelled files decoded and prepared exactly as in serving -> (the prepared photos, their labels, how
    many show none of a reference model's products: serving answers 'retake' for those, never a score).
    DataError for a file that is not a readable image."""
    prepared, labels, not_recognised = [], [], 0
    for sample in tqdm(samples, desc="prepare", disable=not progress, leave=False):
        try:
            prepared.append(prepare(decode(sample.path.read_bytes(), spec).image, spec, references))
        except ImageError as exc:
            raise DataError(f"{sample.path}: {exc.message} (remove it, or run `counterfeit data check`)") from exc
        except NotRecognised:
            not_recognised += 1
            continue
        labels.append(sample.label)
    return prepared, np.array(labels, np.int64), not_recognised


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
