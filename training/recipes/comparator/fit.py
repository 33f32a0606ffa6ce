"""The comparator recipe's fit: enrol each product of DATA/train from its registered genuine photos into the
comparator shipped with the package (head.pt), then calibrate on val. No gradient: the head is not
retrained, so a product joins with a handful of genuine photos.

1. Products, references and registered train genuines exactly as the reference recipe finds them
   (reference/fit.py: registered_genuines).
2. enrol.py: each product's rows (its enrolled genuines, print outline and what its genuines show
   against one another).
3. Val: the head's score is mapped to a logit (logistic fit), temperature and thresholds fitted for the
   target precision, as for the other recipes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inference.classes import COUNTERFEIT
from inference.layout import DataError, list_split
from inference.predictor import Prepared, stacked
from inference.preprocess import PreprocessSpec
from training.config import TrainConfig
from training.prepared import prepared_samples
from training.recipes.comparator.enrol import enrol, enrollable
from training.recipes.comparator.model import ComparatorHead, ComparatorModel
from training.recipes.reference.fit import (
    Registered,
    calibrate_score,
    check_val,
    registered_genuines,
    save_and_export,
    start_run,
)
from training.val_edits import VAL_EDITED_WARNING, edited_val, has_counterfeits

HEAD_FILE = Path(__file__).with_name("head.pt")  # trained by `make comparator` (train_head.py)
BATCH = 16


def read_head(path: Path = HEAD_FILE) -> tuple[dict, dict]:
    """The trained head's weights, checked to fit this comparator's head -> (its state dict, what the head file
    says of where it came from). DataError naming the file otherwise."""
    if not path.is_file():
        raise DataError(f"No trained comparator head at {path}: train one with `make comparator`.")
    saved = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    try:
        ComparatorHead().load_state_dict(saved["head"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise DataError(f"{path} is not a head of this comparator ({str(exc)[:200]}): retrain it with "
                        "`make comparator`.") from exc
    return saved["head"], dict(saved.get("provenance") or {})


def load_head(model: ComparatorModel, path: Path = HEAD_FILE) -> dict:
    """Load the trained head into the model -> what the head file says of where it came from."""
    state, provenance = read_head(path)
    model.head.load_state_dict(state)
    return provenance


def enrolled_model(data, spec: PreprocessSpec, progress: bool) -> tuple[ComparatorModel, Registered, list[str]]:
    """Every product of DATA/train with enough registered genuines, enrolled into a new comparator (its head as
    built: load one) -> (the model, the products as registration found them, the names of those left out)."""
    found, dropped = enrollable(registered_genuines(data, spec, progress))
    model = ComparatorModel(len(found.products), spec.size, spec.mean, spec.std)
    enrol(model, found.frames, found.references, spec)
    return model, found, dropped


@torch.no_grad()
def head_scores(model: ComparatorModel, prepared: list[Prepared]) -> np.ndarray:
    """The head's raw output (before `scale`/`shift`) for prepared photos."""
    scores = []
    for start in range(0, len(prepared), BATCH):
        images, products = map(torch.from_numpy, stacked(prepared[start : start + BATCH]))
        scores.append(model.head(model.head_input(images, products)[0]))
    return torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros(0)


def fit(config: TrainConfig, progress: bool = True, resume: bool = False) -> dict:
    """`counterfeit train --recipe comparator`. Raises ValueError (DataError) on unusable data."""
    if resume:
        raise ValueError("The comparator recipe has no epochs to resume: run it again (a few minutes).")
    spec = start_run(config)
    head, provenance = read_head()  # before minutes of registration: a missing or foreign head fails now
    model, found, dropped = enrolled_model(config.data, spec, progress)
    model.head.load_state_dict(head)
    samples = list_split(config.data, "val", optional=(COUNTERFEIT,))
    real = has_counterfeits(samples)
    if real:
        val, labels, val_left_out = prepared_samples(samples, spec, found.references, progress)
    else:  # genuine photos only: val counterfeits made by editing every second val genuine
        val, labels, val_left_out = edited_val(samples, spec, found.references, config.seed, progress)
    check_val(labels, "comparator recipe")
    calibration, metrics = calibrate_score(model, head_scores(model, val), labels, config.target_precision)
    if not real:
        calibration["warnings"] = [VAL_EDITED_WARNING, *calibration["warnings"]]
    metrics.update(val_not_recognised=val_left_out, comparator_head=provenance,
                   val_counterfeits="real" if real else "edited from val genuines",
                   **({"products_left_out": dropped} if dropped else {}))
    return save_and_export(model, config, found, calibration, metrics)
