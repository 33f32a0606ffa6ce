"""The hue check of the reference model: does the print carry the genuine print's inks?

A counterfeit printed with one ink in another hue keeps every shape where it belongs, and a light fit
(photometric.py) can absorb much of the change: a smooth light field times the print explains a
photo whose main ink moved by 20 degrees nearly as well as a warm white balance does. The distribution of
hues over the print does not move with light level, shading or glare (glare only lowers the chroma that
weights it), so each photo's hue histogram over the product's print is compared with the genuines' mean
histogram. Measured by hand before this module: on real cartons a plain hue-histogram distance separates
recoloured from genuine photos at ROC-AUC 0.94-1.0, where the light-fitted colour check scores 0.44.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HUE_BINS = 24  # 15 degrees a bin
KAPPA = math.log(2) / (1 - math.cos(math.radians(15)))  # a hue one bin (15 deg) from a centre counts half
POOL = 2  # read on 2x2 means of the pooled pixels (4x4 px at 640x480): hue is an area's property
EPS = 1e-6


def bin_directions() -> torch.Tensor:
    """(2, HUE_BINS): unit vectors of the bin centres in the chroma plane."""
    angles = torch.arange(HUE_BINS, dtype=torch.float32) * (2 * math.pi / HUE_BINS)
    return torch.stack([torch.cos(angles), torch.sin(angles)])


def hue_histogram(pixels: torch.Tensor, mask: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(N, HUE_BINS) histogram of hue over the mask, each location weighted by its chroma (0..1): grey,
    white and black print, and glare, have no hue to speak of. pixels (N, 3, h, w) in 0..1, mask (N, h, w).
    Hue is the angle of (2r - g - b, sqrt(3) (g - b)), soft-binned by the cosine to each bin's centre."""
    histogram = hue_weights(pixels, mask, directions)[0].sum((2, 3))
    return histogram / histogram.sum(1, keepdim=True).clamp_min(EPS)


def hue_weights(pixels: torch.Tensor, mask: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (each location's chroma-weighted share in each hue bin (N, HUE_BINS, h/2, w/2), the POOLed pixels
    they were read on (N, 3, h/2, w/2))."""
    pixels = F.avg_pool2d(pixels, POOL)
    mask = F.avg_pool2d(mask.unsqueeze(1), POOL).squeeze(1)
    red, green, blue = pixels.unbind(1)
    chroma_x, chroma_y = 2 * red - green - blue, math.sqrt(3) * (green - blue)
    length = torch.sqrt(chroma_x**2 + chroma_y**2 + EPS)  # 2 x chroma
    cosines = (chroma_x.unsqueeze(1) * directions[0].view(1, -1, 1, 1)
               + chroma_y.unsqueeze(1) * directions[1].view(1, -1, 1, 1)) / length.unsqueeze(1)
    return torch.exp(KAPPA * (cosines - 1)) * (length * mask / 2).unsqueeze(1), pixels


def hue_distance(histogram: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N,) squared Hellinger distance, 0 (same inks in the same shares) .. 1 (no hue in common)."""
    return (1 - torch.sqrt(histogram * reference + EPS**2).sum(1)).clamp_min(0)
