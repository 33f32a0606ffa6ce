"""The reference recipe's fit, the default of `counterfeit train`: fit per-product statistics of registered
genuine photos (model.py), calibrate on val, export. About 3 minutes on 2 CPU cores for 480 photos of 3
products; no epochs, no gradient.

1. Products and references (chosen_references): in each product-line folder, of its first train genuines
   letterboxed to the model input, the one that registers the most of the others, then any that registers
   several more the first missed (another face); each keeps only the keypoints the photos it registers
   confirm: keypoints on the background would attract photos of other products. Keypoints on which the
   other folders' train genuines register too (a shelf neighbour, a sister product's shared print) are
   marked shared: registration ranks products by inliers on their own keypoints (inference/align.py).
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
    marked,
    references_to_json,
    registered_inliers,
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
    chosen = chosen_references(described)
    references = [marked(pick.reference, _others(described, pick.folder)) for pick in chosen.values()]
    registered = _register_genuines(by_folder, described, references, [pick.folder for pick in chosen.values()])
    reference_frames = {product: by_folder[pick.folder][pick.index] for product, pick in chosen.items()}
    left_out = sum(len(frames) for frames in by_folder.values()) - sum(len(frames) for frames in registered)
    folders = {product: pick.folder for product, pick in chosen.items()}
    return Registered(list(chosen), references, registered, reference_frames, folders, left_out)


def _others(described: dict[str, list], folder: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The keypoints of every train genuine outside `folder`: photos of other products."""
    return [photo for other, photos in described.items() if other != folder for photo in photos]


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


class Pick(NamedTuple):
    folder: str
    members: list[int]  # the folder's photos (indices) this reference registers, itself included
    index: int  # the photo the reference was taken from
    reference: Reference


def chosen_references(described: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, Pick]:
    """Each folder's references, by greedy coverage of its first MASK_PHOTOS + 1 genuines: of its first
    CANDIDATES, the photo that registers the most of them first, then, while one registers at least
    MIN_GROUP - 1 more not yet covered, that one (another face, or another product when a folder mixes
    several), each named after the folder ("brand-a", or "brand-a-1", "brand-a-2", ...).

    Seeding a product from every photo the first ones missed made small groups of photos taken one after
    another at one shelf, whose references are mostly shelf: on the real benchmark's 22 products that took
    54 references, and 24.1% of val/test genuines registered to a wrong product, 57.8% to their own; this
    choice takes 23: 17.9% wrong, 63.6% own, and registration 40 ms a photo instead of 70
    (docs/comparator.md, "Registration")."""
    chosen: dict[str, Pick] = {}
    for folder, photos in described.items():
        coverage = _coverage(folder, photos[: MASK_PHOTOS + 1])
        picks = _greedy_picks(coverage, [len(points) for points, _ in photos[: MASK_PHOTOS + 1]])
        for number, (index, members) in enumerate(_members(picks, coverage).items(), 1):
            name = folder if len(picks) == 1 and folder else f"{folder or 'product'}-{number}"
            reference = _confirmed(name, photos[index], [coverage[index][j] for j in members if j != index])
            chosen[name] = Pick(folder, members, index, reference)
    if not chosen:
        raise DataError(f"No {MIN_GROUP} train genuine photos register to one another: the reference recipe needs "
                        "several photos of the front of each product, filling most of the frame.")
    return chosen


def _coverage(folder: str, photos: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[int, np.ndarray]]:
    """For each photo as a draft reference: {other photo: indices of the draft's keypoints it confirms},
    for the photos it registers (at least MIN_INLIERS RANSAC inliers)."""
    found = []
    for index, (points, descriptors) in enumerate(photos):
        draft, agreeing = Reference(folder, points, descriptors), {}
        for other, described in enumerate(photos):
            inliers = registered_inliers(draft, *described) if other != index else None
            if inliers is not None:
                agreeing[other] = inliers
        found.append(agreeing)
    return found


def _greedy_picks(coverage: list[dict[int, np.ndarray]], sizes: list[int]) -> list[int]:
    """The photos greedy coverage picks as references, in order; ties go to the photo whose kept keypoints
    the others confirm most (as best_reference chooses: the reference frame is the picked photo's, and a
    photo taken askew makes a poor frame; on the synthetic holdout the sum of all inliers chose one that
    scored ROC-AUC 0.80 instead of 0.99)."""
    covered: set[int] = set()
    picks = []
    while True:
        gains = [(len(({index} | set(agreeing)) - covered), _support(agreeing, sizes[index]), -index)
                 for index, agreeing in enumerate(coverage[:CANDIDATES])]
        gain, _, negative = max(gains, default=(0, 0, 0))
        if gain < MIN_GROUP:
            return picks
        picks.append(-negative)
        covered |= {-negative} | set(coverage[-negative])


def _confirmation(size: int, agreeing: list[np.ndarray], voters: int) -> tuple[np.ndarray, np.ndarray]:
    """(how many photos confirm each of a draft reference's `size` keypoints, given the inlier indices each
    agreeing photo found; the keypoints at least CONFIRMED of the `voters` photos confirm)."""
    confirmed = np.zeros(size, int)
    for inliers in agreeing:
        confirmed[inliers] += 1
    return confirmed, confirmed >= max(1, round(CONFIRMED * voters))


def _support(agreeing: dict[int, np.ndarray], size: int) -> int:
    """How often the others confirm the keypoints a reference from this photo would keep (_confirmed)."""
    confirmed, keep = _confirmation(size, list(agreeing.values()), len(agreeing))
    return int(confirmed[keep].sum())


def _members(picks: list[int], coverage: list[dict[int, np.ndarray]]) -> dict[int, list[int]]:
    """{pick: the photos it registers best}: a photo that two picks register (a shared barcode or fine print)
    belongs to the one it matches most, so that only its own photos confirm a reference's keypoints."""
    members: dict[int, list[int]] = {pick: [pick] for pick in picks}
    for photo in range(len(coverage)):
        if photo in members:
            continue
        counts = [len(coverage[pick].get(photo, ())) for pick in picks]
        if picks and max(counts) >= MIN_INLIERS:
            members[picks[int(np.argmax(counts))]].append(photo)
    return {pick: sorted(found) for pick, found in members.items()}


def _confirmed(name: str, described: tuple[np.ndarray, np.ndarray], agreeing: list[np.ndarray]) -> Reference:
    """A reference with only the keypoints at least CONFIRMED of the photos it registers agree on: print,
    not background, which would attract photos of other products."""
    points, descriptors = described
    _, keep = _confirmation(len(points), agreeing, len(agreeing))
    if keep.sum() < 2 * MIN_INLIERS:  # too few photos to tell print from background: keep them all
        keep = np.ones(len(points), bool)
    return Reference(name, points[keep], descriptors[keep])


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
        found = [registered_inliers(draft, *other) for other in others]
        agreeing = [inliers for inliers in found if inliers is not None]
        confirmed, keep = _confirmation(len(points), agreeing, len(others))
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
