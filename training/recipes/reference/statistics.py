"""Step 3 of the reference fit (fit.py): each product's statistics, summed batch by batch over its
registered train genuines (held as 8-bit images, 0.9 MB each at 640x480), into the ReferenceModel's
buffers (model.py). For the colour check, the genuine print and the spread of what each photo's own light
fit leaves of it (_colour_statistics), and the genuines' mean hue histogram (_hue_reference)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from inference.layout import DataError
from inference.preprocess import normalise
from training.recipes.reference.model import FEATURE_EPS, PIXEL_EPS, PIXEL_POOL, ReferenceModel
from training.recipes.reference.photometric import window_means

SCORED_QUANTILE = 0.6  # scores are read where the spread is in its lowest 60%: the print, not the edges
TEMPLATE_ROUNDS = 2  # genuine print refined from the residuals of the photos' own light fits, twice
PRINT_QUANTILE = 0.5  # the light is fitted where the genuines' residual spread is in its lowest half ...
COLOUR_QUANTILE = 0.8  # ... and the colour is read on the 80% of that print where it is lowest
BATCH = 8  # registered photos per forward pass


@torch.no_grad()
def fit_statistics(model: ReferenceModel, registered: dict[str, list[Image.Image]], spec, progress: bool) -> None:
    """Fill each product's statistics from its registered train genuines."""
    for index, (product, frames) in enumerate(tqdm(registered.items(), desc="fit products", disable=not progress,
                                                   leave=False)):
        if len(frames) < 2:
            raise DataError(f"Only {len(frames)} train genuine photo(s) of product line {product or '(none)'!r} "
                            "could be registered to its reference; the reference recipe needs at least 2 photos of "
                            "the front of the package, filling most of the frame.")
        _product_statistics(model, index, frames, spec)


def _batches(frames: list[Image.Image], spec) -> Iterator[torch.Tensor]:
    """Model inputs, a few at a time: a product's registered photos are kept as 8-bit images only."""
    for start in range(0, len(frames), BATCH):
        yield torch.from_numpy(np.stack([normalise(frame, spec) for frame in frames[start : start + BATCH]]))


def _pixels(model: ReferenceModel, batch: torch.Tensor) -> torch.Tensor:
    """2x2-averaged RGB of model inputs, as the graph reads them."""
    return F.avg_pool2d(model.rgb(batch), PIXEL_POOL)


def _product_statistics(model: ReferenceModel, index: int, frames: list[Image.Image], spec) -> None:
    raw = Moments()
    for batch in _batches(frames, spec):
        raw.add(_pixels(model, batch))
    spread = raw.std().mean(0)
    model.gain_mask[index] = (spread < spread.median()).float()
    model.scored[index] = (spread <= torch.quantile(spread.flatten(), SCORED_QUANTILE)).float()
    gain_mask = model.gain_mask[index].float()
    model.light[index] = (raw.mean() * gain_mask).sum((1, 2)) / gain_mask.sum()
    features, pixels = Moments(), Moments()
    for batch in _batches(frames, spec):  # again, now that the light level to match is known
        rgb = model.rgb(batch)
        pooled = F.avg_pool2d(rgb, PIXEL_POOL)
        gain = model.gain(pooled, torch.full((len(batch),), index))
        features.add(model.features(rgb * gain))
        pixels.add(pooled * gain)
    model.feature_mean[index], model.feature_std[index] = features.mean(), features.std() + FEATURE_EPS
    model.pixel_mean[index], model.pixel_std[index] = pixels.mean(), pixels.std() + PIXEL_EPS
    _colour_statistics(model, index, raw, frames, spec)


def _colour_statistics(model: ReferenceModel, index: int, raw: "Moments", frames: list[Image.Image], spec) -> None:
    """The genuine print, where to fit the light, where to read the residual and its genuine spread, for
    the colour check. The mean photo is a blurred print (each photo has its own light); fitting every
    photo's light to it and adding back the mean residual sharpens it."""
    model.template[index], model.print_mask[index] = raw.mean(), model.gain_mask[index]
    for _ in range(TEMPLATE_ROUNDS):
        residual = _colour_residuals(model, index, frames, spec)
        model.template[index] += residual.mean()
        model.print_mask[index] = torch.from_numpy(print_mask(residual.std().mean(0).numpy()))
    spread = _colour_residuals(model, index, frames, spec).std().mean(0)
    on_print = model.print_mask[index] > 0
    model.colour_scored[index] = (on_print & (spread <= torch.quantile(spread[on_print], COLOUR_QUANTILE))).float()
    model.window_spread[index] = _colour_residuals(model, index, frames, spec, windowed=True).std()
    model.hue_reference[index] = _hue_reference(model, index, frames, spec)


def _hue_reference(model: ReferenceModel, index: int, frames: list[Image.Image], spec) -> torch.Tensor:
    """The train genuines' mean hue histogram over the product's print (training/hue.py)."""
    histograms = Moments()
    for batch in _batches(frames, spec):
        histograms.add(model.hue_histogram(_pixels(model, batch), torch.full((len(batch),), index)))
    return histograms.mean()


def _colour_residuals(model: ReferenceModel, index: int, frames: list[Image.Image], spec,
                      windowed: bool = False) -> "Moments":
    """Moments of the train genuines' colour residuals, or of their window means."""
    moments = Moments()
    for batch in _batches(frames, spec):
        product = torch.full((len(batch),), index)
        residual = model.colour_residual(_pixels(model, batch), product)
        moments.add(window_means(residual, model.colour_scored[product].float())[0] if windowed else residual)
    return moments


def print_mask(spread: np.ndarray) -> np.ndarray:
    """(h, w) float32, 1 on the product's print: the largest connected region where the genuines' residual
    spread is in its lowest PRINT_QUANTILE, without specks (opened) or pin-holes (closed). Background that
    happens to be steady in a few places is not print."""
    steady = (spread < np.quantile(spread, PRINT_QUANTILE)).astype(np.uint8)
    steady = cv2.morphologyEx(steady, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(steady)
    if count < 2:
        raise DataError("The registered genuine photos agree nowhere on the print: check that each product line "
                        "folder holds photos of one product's front.")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    return cv2.morphologyEx(region, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8)).astype(np.float32)


class Moments:
    """Running mean and sample standard deviation of equally shaped tensors (float64 sums)."""

    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, torch.zeros(()), torch.zeros(())

    def add(self, batch: torch.Tensor) -> None:
        values = batch.double()
        self.count += len(values)
        self.total = self.total + values.sum(0)
        self.squares = self.squares + (values**2).sum(0)

    def mean(self) -> torch.Tensor:
        return (self.total / self.count).float()

    def std(self) -> torch.Tensor:
        variance = (self.squares - self.total**2 / self.count) / max(self.count - 1, 1)
        return variance.clamp_min(0).sqrt().float()
