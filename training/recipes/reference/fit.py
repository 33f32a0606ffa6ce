"""The reference recipe's fit, the default of `counterfeit train`: fit per-product statistics of registered
genuine photos (model.py), calibrate on val, export. About 3 minutes on 2 CPU cores for 480 photos of 3
products; no epochs, no gradient.

1. Products: the product-line folders, each split into the sets of genuines that register to one another
   (registration_groups). References: of each product's first train genuines, letterboxed to the model
   input, the one the others confirm most, with only the keypoints they confirm: keypoints on the
   background would attract photos of other products.
2. Every train genuine is registered as serving registers it (inference.predictor.prepare), from the
   keypoints found once per photo in step 1; one that lands on another folder's product, or on none, is
   left out and counted.
3. Statistics per product, summed batch by batch over its registered photos (statistics.py); for the
   colour check, the genuine print and the spread of what each photo's own light fit leaves of it, and
   the genuines' mean hue histogram. Then val: the fused score is standardised on the val genuines and
   mapped to a logit (logistic fit on val), and temperature and thresholds are fitted on val exactly as
   for the classifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from inference.align import (
    MIN_INLIERS,
    Reference,
    best_match,
    keypoints,
    match,
    references_to_json,
    warp,
)
from inference.calibration import calibrate, calibration_problems
from inference.catalogue import line_sides, thumbnail_data_uri
from inference.classes import COUNTERFEIT
from inference.layout import DataError, Sample, list_split
from inference.metrics import roc_auc
from inference.predictor import Prepared, decode, softmax_scores, stacked
from inference.preprocess import letterbox
from training.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.export import export_checkpoint
from training.prepared import prepared_samples
from training.recipes.reference.model import ReferenceModel
from training.recipes.reference.statistics import BATCH, fit_statistics

MASK_PHOTOS = 30  # genuines per product that vote on which reference keypoints lie on the print
CONFIRMED = 0.2  # a reference keypoint is kept when it is a RANSAC inlier for this share of them
CANDIDATES = 15  # the reference is the best-confirmed of a product's first few train genuines
MIN_GROUP = 3  # genuines that register to one another before they count as a product


def fit(config: TrainConfig, progress: bool = True, resume: bool = False) -> dict:
    """`counterfeit train` with recipe 'reference'. Raises ValueError (DataError) on unusable data."""
    if resume:  # no epochs: nothing to resume (or to distribute)
        raise ValueError("The reference recipe has no epochs to resume: run it again (a few minutes).")
    spec = start_run(config)
    found = registered_genuines(config.data, spec, progress)
    model = ReferenceModel(len(found.references), config.image_size, spec.mean, spec.std)
    fit_statistics(model, dict(zip(found.products, found.frames)), spec, progress)
    val, labels, val_left_out = prepared_samples(list_split(config.data, "val"), spec, found.references, progress)
    calibration, metrics = _calibrate(model, val, labels, config.target_precision)
    return save_and_export(model, config, found, calibration, {**metrics, "val_not_recognised": val_left_out})


def start_run(config: TrainConfig):
    """Seed, RUN folder and RUN/config.json, as the recipes that fit registered products start -> the spec."""
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return config.preprocess_spec()


class Registered(NamedTuple):
    """A DATA folder's products as registration finds them, and their train genuines in their frames."""

    products: list[str]
    references: list[Reference]
    frames: list[list[Image.Image]]  # each product's registered train genuines
    reference_frames: dict[str, Image.Image]  # {product: the photo its reference was taken from}
    folders: dict[str, str]  # {product: the folder it was found in}
    left_out: int  # train genuines registered to no product of their own folder


def registered_genuines(data, spec, progress: bool) -> Registered:
    """Steps 1 and 2 above, shared with the comparator recipe."""
    # Counterfeits are not needed to learn what genuine prints look like: train/counterfeit/ may be empty.
    by_folder = _genuines_by_product(list_split(data, "train", optional=(COUNTERFEIT,)), spec, progress)
    described = {folder: [keypoints(frame) for frame in tqdm(frames, desc=f"keypoints {folder}".strip(),
                                                               disable=not progress, leave=False)]
                 for folder, frames in by_folder.items()}  # found once per photo, used by every step below
    groups, folders = registration_groups(described)
    chosen = {product: best_reference(product, [described[folders[product]][i] for i in group])
              for product, group in groups.items()}  # {product: (index in its group, reference)}
    references = [reference for _, reference in chosen.values()]
    registered = _register_genuines(by_folder, described, references, [folders[p] for p in groups])
    reference_frames = {product: by_folder[folders[product]][groups[product][index]]
                        for product, (index, _) in chosen.items()}
    left_out = sum(len(frames) for frames in by_folder.values()) - sum(len(frames) for frames in registered)
    return Registered(list(groups), references, registered, reference_frames, folders, left_out)


def save_and_export(model: torch.nn.Module, config: TrainConfig, found: Registered, calibration: dict,
                    metrics: dict) -> dict:
    """Checkpoint, metrics and the verified ONNX export of a model fitted on registered products."""
    out = Path(config.out)
    metrics = {**metrics, "train_genuines_left_out": found.left_out, "products": found.products}
    save_checkpoint(out / "checkpoint.pt", model, config, references=references_to_json(found.references),
                    calibration=calibration, metrics=metrics,
                    catalogue=_catalogue(found.reference_frames, [len(f) for f in found.frames], found.folders))
    (out / "metrics.jsonl").write_text(json.dumps({"epoch": 1, **metrics}) + "\n")
    metadata = export_checkpoint(out / "checkpoint.pt", out / "model.onnx")
    return {"best": {"epoch": 1, **metrics}, "model": str(out / "model.onnx"), "version": metadata.version,
            "warnings": metadata.metrics.get("warnings", [])}


def _genuines_by_product(samples: list[Sample], spec, progress: bool) -> dict[str, list[Image.Image]]:
    """Train genuines letterboxed to the model input (registration works in that frame), by product."""
    found: dict[str, list[Image.Image]] = {}
    for sample in tqdm(samples, desc="decode train genuines", disable=not progress, leave=False):
        if sample.label == 0:
            image = decode(sample.path.read_bytes(), spec).image
            found.setdefault(sample.product, []).append(letterbox(image, spec))
    if not found:
        raise DataError("The train split has no genuine photos: the reference recipe learns from genuines.")
    return dict(sorted(found.items()))


def registration_groups(described: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> tuple[dict[str, list[int]],
                                                                                            dict[str, str]]:
    """Product lines as registration finds them, from each folder's photos' keypoints
    -> ({name: indices of the folder's photos that found it}, {name: folder}).

    A folder's genuines that do not register to one another are not one product (no product sub-folders,
    or the back of a package beside its front): each set that does becomes its own product, named after
    the folder ("product-1", "brand-a-2", ...)."""
    products, folders = {}, {}
    for folder, photos in described.items():
        seeds, remaining = [], list(range(len(photos)))
        while remaining:  # every photo that registers to no earlier seed seeds a product of its own
            seed = Reference(folder, *photos[remaining[0]])
            seeds.append(seed)
            remaining = [i for i in remaining[1:] if _inliers(seed, photos[i]) < MIN_INLIERS]
        # Then each photo joins the seed it registers to best: a photo that also matches another product's
        # seed (shared barcode or fine print) goes where it matches most.
        members: list[list[int]] = [[] for _ in seeds]
        for i, photo in enumerate(photos):
            counts = [_inliers(seed, photo) for seed in seeds]
            if max(counts) >= MIN_INLIERS:
                members[int(np.argmax(counts))].append(i)
        groups = [group for group in members if len(group) >= MIN_GROUP]
        for number, group in enumerate(groups, 1):
            name = folder if len(groups) == 1 and folder else f"{folder or 'product'}-{number}"
            products[name], folders[name] = group, folder
    if not products:
        raise DataError(f"No {MIN_GROUP} train genuine photos register to one another: the reference recipe needs "
                        "several photos of the front of each product, filling most of the frame.")
    return products, folders


def _inliers(reference: Reference, described: tuple[np.ndarray, np.ndarray]) -> int:
    homography, agreeing = match(reference, *described)
    return 0 if homography is None else len(agreeing)


def _catalogue(frames: dict[str, Image.Image], photos: list[int], folders: dict[str, str]) -> dict:
    """What the model file's catalogue says (inference/catalogue.py): each product's reference frame as a
    small JPEG, the train genuines its statistics come from, and the product lines (folder -> sides)."""
    return {"product_lines": {line: list(sides) for line, sides in line_sides(folders).items()},
            "products": {product: {"photos": count, "reference_image": thumbnail_data_uri(frame)}
                         for (product, frame), count in zip(frames.items(), photos)}}


def best_reference(product: str, photos: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, Reference]:
    """Of the first CANDIDATES photos (keypoints), the one whose keypoints the product's other genuines
    confirm most (RANSAC inliers in at least CONFIRMED of them), with only those keypoints: print, not
    background, which would attract photos of other products -> (its index, the reference)."""
    described = photos[: MASK_PHOTOS + 1]
    best = None
    for index in range(min(CANDIDATES, len(described))):
        points, descriptors = described[index]
        draft = Reference(product, points, descriptors)
        others = described[:index] + described[index + 1 :]
        confirmed = np.zeros(len(points), int)
        for other in others:
            homography, agreeing = match(draft, *other)
            if homography is not None and len(agreeing) >= MIN_INLIERS:
                confirmed[agreeing] += 1
        keep = confirmed >= max(1, round(CONFIRMED * len(others)))
        if keep.sum() < 2 * MIN_INLIERS:  # too few photos to tell print from background: keep them all
            keep = np.ones(len(points), bool)
        support = int(confirmed[keep].sum())
        if best is None or support > best[0]:
            best = (support, index, Reference(product, points[keep], descriptors[keep]))
    return best[1], best[2]


def _register_genuines(by_folder: dict[str, list[Image.Image]], described: dict[str, list], references: list[Reference],
                       folder_of: list[str]) -> list[list[Image.Image]]:
    """Each product's train genuines in its reference frame: every genuine of a folder that registers (as
    serving registers it: inference.predictor.prepare) to one of that folder's products, not only those of
    its group. One that lands on another folder's product, or on none, is left out."""
    registered: list[list[Image.Image]] = [[] for _ in references]
    for folder, frames in by_folder.items():
        for frame, (points, descriptors) in zip(frames, described[folder]):
            found = best_match(points, descriptors, references)  # frames are letterboxed already
            if found is not None and folder_of[found.product] == folder:
                registered[found.product].append(warp(frame, found.homography))
    return registered


@torch.no_grad()
def _calibrate(model: ReferenceModel, val: list[Prepared], labels: np.ndarray,
               target_precision: float) -> tuple[dict, dict]:
    """Standardise the fused score on the val genuines, map it to a logit, fit temperature and thresholds."""
    check_val(labels, "reference recipe")
    raw = torch.cat([model.raw_scores(*map(torch.from_numpy, stacked(val[i : i + BATCH])))
                     for i in range(0, len(val), BATCH)])
    genuine = raw[torch.from_numpy(labels == 0)]
    model.centre.copy_(genuine.mean(0))
    model.spread.copy_(genuine.std(0) + 1e-6)
    # One standardisation for all val genuines, copied to every product's row (model.py).
    fused = ((raw - model.centre[0]) / model.spread[0]).amax(1).numpy().astype(np.float64)
    return calibrate_score(model, fused, labels, target_precision)


def check_val(labels: np.ndarray, recipe: str) -> None:
    if (labels == 0).sum() < 2 or (labels == 1).sum() < 1:
        raise DataError(f"The {recipe} calibrates on val: it needs at least 2 recognised genuine and 1 "
                        f"counterfeit val photos; it has {(labels == 0).sum()} and {(labels == 1).sum()}.")


def calibrate_score(model: torch.nn.Module, score: np.ndarray, labels: np.ndarray,
                    target_precision: float) -> tuple[dict, dict]:
    """Map a model's val score to a logit (its `scale` and `shift`, set here), fit temperature and thresholds
    -> (calibration, val metrics)."""
    scale, shift = logistic_fit(score, labels)
    if scale < 0:  # val says more evidence means genuine: never inverted; the photos are simply not told apart
        rate = float(np.clip(labels.mean(), 1e-3, 1 - 1e-3))
        scale, shift = 0.0, float(np.log(rate / (1 - rate)))
    model.scale.fill_(scale)
    model.shift.fill_(shift)
    half = (scale * score + shift) / 2
    logits = np.stack([-half, half], 1)  # what the graph computes (model.py)
    temperature, thresholds = calibrate(logits, labels, target_precision)
    warnings = calibration_problems(logits, labels, temperature, thresholds, target_precision)
    scores = softmax_scores(logits, temperature, 1)
    metrics = {"roc_auc": roc_auc(scores, labels), "accuracy": float(((scores >= 0.5) == labels).mean()),
               "loss": float(-np.mean(np.log(np.where(labels == 1, scores, 1 - scores).clip(1e-12)))),
               "val_n": int(len(labels))}
    return {"temperature": temperature, "low": thresholds.low, "high": thresholds.high, "warnings": warnings}, metrics


def logistic_fit(x: np.ndarray, labels: np.ndarray, steps: int = 50, ridge: float = 1e-3) -> tuple[float, float]:
    """(a, b) maximising the likelihood of P(counterfeit) = sigmoid(a x + b): Newton's method, 2 parameters."""
    design = np.stack([x, np.ones_like(x)], 1)
    weights = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (p - labels) + ridge * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        weights -= np.linalg.solve(hessian, gradient)
    return float(weights[0]), float(weights[1])
