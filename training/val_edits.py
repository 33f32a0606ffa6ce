"""Val counterfeits made from val genuines, for a DATA folder whose val split has none (issue 22).

A brand starting out has genuine photos of its products and no seized fakes. Thresholds still need both
classes on val, so every second val genuine (in name order) is edited once by a print-plausible edit a
person can see at phone resolution (datatools/edits.py: an ink turned in hue or lightness, a reprint),
the kinds taking turns, and used as a counterfeit; the edited photo is used nowhere else, and its
source is no longer a genuine. Such counterfeits calibrate the thresholds. They prove nothing about real
fakes, and the model file says so (VAL_EDITED_WARNING).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from inference.align import NotRecognised, Reference
from inference.classes import CLASSES, COUNTERFEIT
from inference.images import ImageError
from inference.layout import DataError, Sample
from inference.predictor import Prepared, decode, prepare
from inference.preprocess import PreprocessSpec

EDIT_KINDS = ("hue", "lightness", "reprint")
VAL_EDITED_WARNING = ("val had no counterfeit photos: the thresholds were calibrated on val genuines edited by "
                      "print-plausible edits (ink hue or lightness, reprint). Edited photos prove nothing about "
                      "real fakes: measure the model on real counterfeits before relying on its verdicts")


def has_counterfeits(samples: Sequence[Sample]) -> bool:
    return any(sample.label == CLASSES.index(COUNTERFEIT) for sample in samples)


def edited(image: Image.Image, kind: str, seed: int) -> Image.Image:
    """The photo with its package's print edited by `kind` (the package found by GrabCut: no artwork here)."""
    from datatools.edits import EDITS, package_region

    mask, _ = package_region(image)
    return EDITS[kind](image, mask, np.random.default_rng(seed))


def edited_val(samples: Sequence[Sample], spec: PreprocessSpec, references: Sequence[Reference] = (),
               seed: int = 0, progress: bool = False) -> tuple[list[Prepared], np.ndarray, int]:
    """prepared_samples() for a val split of genuines only: every second one edited into a counterfeit
    -> (prepared photos, labels, photos registration did not recognise)."""
    prepared, labels, not_recognised = [], [], 0
    counterfeit = CLASSES.index(COUNTERFEIT)
    for index, sample in enumerate(tqdm(samples, desc="val: edit every second genuine", disable=not progress,
                                        leave=False)):
        try:
            image = decode(sample.path.read_bytes(), spec).image
        except ImageError as exc:
            raise DataError(f"{sample.path}: {exc.message} (remove it, or run `counterfeit data check`)") from exc
        label = counterfeit if index % 2 else sample.label
        if index % 2:
            kind = EDIT_KINDS[(index // 2) % len(EDIT_KINDS)]
            image = edited(image, kind, zlib.crc32(f"{seed}/{sample.path.name}/{kind}".encode()))
        try:
            prepared.append(prepare(image, spec, references))
        except NotRecognised:
            not_recognised += 1
            continue
        labels.append(label)
    return prepared, np.array(labels, np.int64), not_recognised
