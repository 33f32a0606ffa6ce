"""Labelled photos prepared exactly as serving prepares them (inference.predictor.prepare): what the
reference fit calibrates on and `counterfeit calibrate` refits on. No torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from inference.align import NotRecognised, Reference
from inference.images import ImageError
from inference.layout import DataError, Sample
from inference.predictor import Prepared, decode, prepare
from inference.preprocess import PreprocessSpec


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
