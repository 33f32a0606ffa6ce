"""Several photos of one item -> one score: the combination maths, numpy only (serving, calibration, bench).

An item (a carton photographed front, back and label) is judged as a whole: a counterfeit may be perfect
on one side and wrong on another. Two rules, both in the space of the photos' calibrated scores:

- **calibrated** (the model file carries `metrics["item_combiner"]`, written by `counterfeit calibrate
  --items`): item score = sigmoid(w_max * max photo logit + w_mean * mean photo logit + bias), a logistic
  fit on items formed from the val photos of one product (counterfeit items: one side edited). Fitted on
  items, so the photos' evidence is not assumed independent; both weights are kept >= 0.
  The item's score is decided with thresholds chosen on those val items for the model's target precision.
- **worst photo** (no item calibration): the item score is its highest photo score, so the item is
  counterfeit when any photo is, genuine only when every photo is, and inconclusive otherwise.

Either way a photo whose score reaches the model's `high` threshold makes the item at least that score:
strong counterfeit evidence on one side is never averaged away by genuine-looking others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from inference.metadata import Thresholds

COMBINER_KEY = "item_combiner"  # in ModelMetadata.metrics
CALIBRATED, WORST_PHOTO = "calibrated", "worst_photo"  # the combination rules, as answers name them
ITEM_SIZES = (2, 3, 4)  # photos per val item: what inspectors send (front, back, label, a detail)
_EPS = 1e-6  # scores are clipped to [EPS, 1 - EPS] before the logit: finite for 0 and 1 (logit +-13.8)
_RIDGE = 1e-3  # L2 on the weights: keeps the fit finite when val items separate perfectly


def logit(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(scores, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def features(photo_scores: Sequence[float]) -> np.ndarray:
    """(max, mean) of the photos' logits: the strongest side and the whole item."""
    logits = logit(photo_scores)
    return np.array([logits.max(), logits.mean()])


@dataclass(frozen=True)
class Combiner:
    """The fitted item rule: item logit = weight_max * max logit + weight_mean * mean logit + bias."""

    weight_max: float
    weight_mean: float
    bias: float
    items: int = 0  # val items it was fitted on
    # The item's own thresholds, chosen on the val items' scores for the model's target precision: the
    # photos' thresholds applied to item scores decide at a lower precision (more photos, more chances of
    # one false alarm). None: the model's.
    thresholds: Thresholds | None = None

    def __post_init__(self) -> None:
        values = (self.weight_max, self.weight_mean, self.bias)
        if not all(math.isfinite(v) for v in values) or min(self.weight_max, self.weight_mean) < 0:
            raise ValueError(f"item combiner weights must be finite, both weights >= 0; got {values}")

    def score(self, photo_scores: Sequence[float]) -> float:
        value = float(np.dot([self.weight_max, self.weight_mean], features(photo_scores)) + self.bias)
        return float(1 / (1 + math.exp(-max(-700.0, min(700.0, value)))))

    def to_dict(self) -> dict:
        values = {"weight_max": self.weight_max, "weight_mean": self.weight_mean, "bias": self.bias,
                  "items": self.items}
        return {**values, "thresholds": self.thresholds.to_dict()} if self.thresholds else values

    @classmethod
    def from_dict(cls, values: dict) -> Combiner:
        bounds = values.get("thresholds")
        thresholds = Thresholds(float(bounds["low"]), float(bounds["high"])) if bounds else None
        return cls(float(values["weight_max"]), float(values["weight_mean"]), float(values["bias"]),
                   int(values.get("items", 0)), thresholds)


def item_thresholds(model: Thresholds, combiner: Combiner | None) -> Thresholds:
    """The thresholds an item's score is decided with: its calibration's, else the model's."""
    return combiner.thresholds if combiner is not None and combiner.thresholds is not None else model


def combiner_of(metrics: dict) -> Combiner | None:
    """The model's item combiner, or None when it has none (or an unreadable one: the conservative rule)."""
    values = metrics.get(COMBINER_KEY)
    if not isinstance(values, dict):
        return None
    try:
        return Combiner.from_dict(values)
    except (KeyError, TypeError, ValueError):
        return None


def combine(photo_scores: Sequence[float], thresholds: Thresholds, combiner: Combiner | None) -> float:
    """The item's score from its scored photos' calibrated scores (at least one); `thresholds`: the model's
    (the photos' own)."""
    if len(photo_scores) == 0:
        raise ValueError("an item needs at least one scored photo")
    strongest = float(max(photo_scores))
    if combiner is None:
        return strongest
    combined = combiner.score(photo_scores)
    if strongest < thresholds.high:
        return combined
    # A side the model calls counterfeit on its own keeps the item counterfeit, whatever the others say:
    # at least that photo's score, and at least the item's own counterfeit threshold.
    return max(combined, strongest, item_thresholds(thresholds, combiner).high)


def fit_combiner(items: Sequence[Sequence[float]], labels: Sequence[int]) -> Combiner:
    """Logistic regression of the item label (1 = counterfeit) on (max, mean) photo logit, by Newton steps
    with a small ridge; a feature whose weight comes out negative is dropped and the rest refitted, so that
    more counterfeit evidence never lowers an item's score. ValueError without both classes."""
    y = np.asarray(labels, np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("item calibration needs genuine and counterfeit items; the val photos gave "
                         f"{int(y.sum())} counterfeit of {len(y)}")
    x = np.array([features(scores) for scores in items])
    kept = [0, 1]
    while True:
        weights, bias = _newton_logistic(x[:, kept], y)
        if (weights >= 0).all() or not kept:
            break
        kept = [k for k, w in zip(kept, weights) if w >= 0]
    full = np.zeros(2)
    full[kept] = weights
    return Combiner(float(full[0]), float(full[1]), float(bias), len(y))


def _newton_logistic(x: np.ndarray, y: np.ndarray, steps: int = 50) -> tuple[np.ndarray, float]:
    """(weights, bias) maximising the ridge-penalised log-likelihood; x may have no columns (bias only)."""
    design = np.column_stack([x, np.ones(len(y))])
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], _RIDGE)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -700, 700)))
        gradient = design.T @ (y - p) - penalty * beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def form_items(by_product: dict[str, tuple[Sequence[float], Sequence[float]]], seed: int = 0,
               per_photo: int = 2, sizes: Sequence[int] = ITEM_SIZES) -> tuple[list[list[float]], list[int]]:
    """Items from photos of one product: {product: (genuine photo values, counterfeit photo values)} ->
    (items, labels). A genuine item is `size` distinct genuine photos; a counterfeit item is one
    counterfeit photo (one edited side) with `size - 1` distinct genuine photos of the same product.
    `per_photo` items of each class per photo of that class; products with too few genuines give fewer."""
    rng = np.random.default_rng(seed)
    items: list[list[float]] = []
    labels: list[int] = []
    for product in sorted(by_product):
        genuine, fakes = (list(values) for values in by_product[product])
        for _ in range(per_photo * len(genuine)):
            size = _size(rng, sizes, len(genuine))
            if size >= 2:
                items.append([genuine[i] for i in rng.choice(len(genuine), size, replace=False)])
                labels.append(0)
        for fake in fakes:
            for _ in range(per_photo):
                size = _size(rng, sizes, len(genuine) + 1)
                if size >= 2:
                    others = [genuine[i] for i in rng.choice(len(genuine), size - 1, replace=False)]
                    items.append(_insert(others, fake, rng))
                    labels.append(1)
    return items, labels


def _size(rng: np.random.Generator, sizes: Sequence[int], available: int) -> int:
    """A size drawn from `sizes`, capped by the photos available (0 when fewer than 2 are)."""
    return min(int(rng.choice(sizes)), available) if available >= 2 else 0


def _insert(others: list, fake, rng: np.random.Generator) -> list:
    """The edited side at a random position: which side is wrong should not be a cue."""
    at = int(rng.integers(0, len(others) + 1))
    return others[:at] + [fake] + others[at:]
