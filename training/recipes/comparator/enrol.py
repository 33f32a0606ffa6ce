"""Enrolling products into a comparator (model.py): a product's registered genuine photos become its rows of
the model's per-product buffers. Nothing is trained: the head is the one shipped with the package.

A product's rows: up to MAX_REFERENCES of its photos (evenly chosen), each described as the model describes
a photo; its print (`hull`: the convex hull of its reference's keypoints); and `typical`, what its genuines
show against one another: each kept photo compared with the others (leave-one-out), the median per
comparison.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from inference.align import Reference
from inference.layout import DataError
from inference.preprocess import PreprocessSpec, normalise
from training.recipes.comparator.model import DESCRIPTIONS, MAX_REFERENCES, ComparatorModel, compare
from training.recipes.reference.fit import Registered
from training.recipes.reference.lite0 import STRIDE

PER_PRODUCT_BUFFERS = ("ref_features", "ref_pixels", "ref_hue", "ref_lightness", "ref_detail", "count", "hull",
                       "typical")  # first axis = product
MIN_PHOTOS = 3  # registered genuine photos a product needs to be enrolled


def evenly(count: int, keep: int) -> np.ndarray:
    """`keep` indices spread evenly over range(count) (all of them when count <= keep)."""
    return np.arange(count) if count <= keep else np.linspace(0, count - 1, keep).round().astype(int)


def hull_mask(reference: Reference, spec: PreprocessSpec) -> torch.Tensor:
    """(H/8, W/8) 0/1: the cells mostly inside the convex hull of the reference's keypoints (its print)."""
    import cv2

    canvas = Image.new("L", spec.size, 0)
    if len(reference.points) >= 3:
        hull = cv2.convexHull(reference.points.astype(np.float32)).reshape(-1, 2)
        ImageDraw.Draw(canvas).polygon([tuple(point) for point in hull.tolist()], fill=255)
    cells = torch.nn.functional.avg_pool2d(torch.from_numpy(np.asarray(canvas, np.float32) / 255)[None, None], STRIDE)
    mask = (cells[0, 0] > 0.5).float()
    return mask if mask.sum() >= 16 else torch.ones_like(mask)  # too few keypoints to outline: the frame


@torch.no_grad()
def product_rows(model: ComparatorModel, frames: list[Image.Image], reference: Reference,
                 spec: PreprocessSpec) -> dict[str, torch.Tensor]:
    """One product's rows of PER_PRODUCT_BUFFERS from its registered genuine photos."""
    if len(frames) < MIN_PHOTOS:
        raise ValueError(f"a product needs at least {MIN_PHOTOS} registered genuine photos to be enrolled; "
                         f"got {len(frames)}")
    kept = evenly(len(frames), MAX_REFERENCES)
    batch = torch.from_numpy(np.stack([normalise(frames[i], spec) for i in kept]))
    hull = hull_mask(reference, spec)
    n = len(kept)
    photos = model.describe(batch, hull.expand(n, -1, -1))
    rows = {"count": torch.tensor(n), "hull": hull}
    for name in DESCRIPTIONS:
        described = photos[name]
        row = torch.zeros(MAX_REFERENCES, *described.shape[1:])
        row[:n] = described
        if name in ("features", "pixels"):  # rounded as the model file keeps them, so `typical` is what serving sees
            row = row.half().float()
        rows[f"ref_{name}"] = row
    empty = torch.arange(MAX_REFERENCES).unsqueeze(0).expand(n, -1) >= n
    empty = empty | torch.eye(n, MAX_REFERENCES, dtype=torch.bool)  # each photo against the others only
    genuines = {name: rows[f"ref_{name}"].unsqueeze(0).expand(n, *rows[f"ref_{name}"].shape) for name in DESCRIPTIONS}
    raw, _ = compare(photos, genuines, hull.expand(n, -1, -1), empty)
    rows["typical"] = raw.median(0).values.clamp_min(1e-6)
    return rows


def enrollable(found: Registered) -> tuple[Registered, list[str]]:
    """The products with at least MIN_PHOTOS registered genuines (a product registration found may keep
    fewer, once its photos go to the products they match best) -> (those, the names of the others)."""
    keep = [i for i, frames in enumerate(found.frames) if len(frames) >= MIN_PHOTOS]
    dropped = [name for i, name in enumerate(found.products) if i not in keep]
    if not keep:
        raise DataError(f"No product has {MIN_PHOTOS} train genuine photos that register to it: photograph the "
                        "front of each product, filling most of the frame.")
    kept = Registered([found.products[i] for i in keep], [found.references[i] for i in keep],
                      [found.frames[i] for i in keep],
                      {name: frame for name, frame in found.reference_frames.items() if name not in dropped},
                      {name: folder for name, folder in found.folders.items() if name not in dropped},
                      found.left_out + sum(len(found.frames[found.products.index(name)]) for name in dropped))
    return kept, dropped


def enrol(model: ComparatorModel, products: list[list[Image.Image]], references: list[Reference],
          spec: PreprocessSpec) -> None:
    """Fill the model's per-product buffers, product i from its registered frames products[i]."""
    rows = [product_rows(model, frames, reference, spec) for frames, reference in zip(products, references)]
    with torch.no_grad():
        for name in PER_PRODUCT_BUFFERS:
            buffer = getattr(model, name)
            buffer.copy_(torch.stack([row[name] for row in rows]).to(buffer.dtype))
