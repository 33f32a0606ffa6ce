"""The comparator: one product-agnostic model that scores a registered photo against its product's enrolled
genuine photos, as one exportable graph.

Inputs: `image` (N, 3, H, W), the photo registered into its product's reference frame and normalised as the
preprocess spec says (inference/align.py, as for the reference recipe), and `product` (N,) int64. Outputs:
`logits` (N, 2), `heatmap` (N, H/8, W/8), `embedding` (N, 40).

What it compares, on the product's print (`hull`: where the reference's keypoints lie), with each enrolled
genuine photo (registered likewise):
- hue: the photo's hue histogram over the print against each genuine's (reference/hue.py): an ink printed
  in another hue moves it, light level and shading do not. Nearest genuine, and mean of the 2 nearest.
- per location (8x8 px cells): frozen ImageNet Lite0 block-4 features (cosine distance), colour after a
  per-channel gain that brings the genuine to the photo's light, and chromaticity. Each location keeps the
  mean of its 2 nearest genuines there (a glare or a hand on one genuine is not held against the photo);
  each map is summed up by its strongest cell, the mean of its strongest 4 and 16, and its mean.
- the same maps averaged over the print for each genuine, nearest genuine (one photo that agrees throughout).
Each of these COMPARISONS is taken as its log and as its log ratio to what the product's genuines show
against one another (`typical`, leave-one-out at enrolment). A head trained once across many products on
real photo pairs (training/recipes/comparator/train_head.py) maps them to a logit; it ships with the package.
Per product the model holds only its enrolled genuines (training/recipes/comparator/enrol.py): enrolling a
product trains nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import TrainConfig
from training.recipes.reference.hue import HUE_BINS, bin_directions, hue_distance, hue_weights
from training.recipes.reference.hue import POOL as HUE_POOL
from training.recipes.reference.lite0 import STRIDE, STRIDE8_CHANNELS, Lite0Features
from training.recipes.reference.model import products_model

MAX_REFERENCES = 16  # enrolled genuine photos kept per product (evenly chosen when there are more)
NEAREST = 2  # genuines each location is compared with
HUE_NEAREST = 2
TOP = (1, 4, 16)  # a map's strongest cells: their means are summed up
MAPS = ("features", "colour", "chroma")
COMPARISONS = ("hue nearest", "hue 2 nearest", *(f"{m} nearest photo" for m in MAPS),
               *(f"{m} {s}" for m in MAPS for s in ("max", "top-4", "top-16", "mean")),
               "ink lightness nearest", "ink lightness 2 nearest", "print detail lost")
# The kinds of counterfeit a person sees at phone resolution, and the comparisons that speak of each.
EXPERTS = {"hue": ("hue nearest", "hue 2 nearest"),
           "lightness": ("ink lightness nearest", "ink lightness 2 nearest"),
           "reprint": ("print detail lost",)}
DESCRIPTIONS = ("features", "pixels", "hue", "lightness", "detail")  # of a photo, and of each enrolled genuine
HEATMAP_UNIT = COMPARISONS.index("features max")
FAR = 4.0  # distance given to an empty reference slot: beyond any real one
EPS = 1e-6
WHITE_CELLS = 16  # the print's brightest areas (HUE_POOL x HUE_POOL cells) whose mean lightness is its paper white


def head_inputs() -> int:
    return 2 * len(COMPARISONS)


class ComparatorHead(nn.Module):
    """The comparisons -> a logit of counterfeit: a soft maximum of a few EXPERTS, each a logistic map of the
    comparisons that speak of one kind of counterfeit (an ink's hue, an ink's lightness, a reprint).
    Measured on real photos of products left out (docs/comparator.md): one linear map of all comparisons
    learned the training products more than the task (the location-wise comparisons are at chance on real
    photos and drowned the hue), so each expert reads only its own comparisons."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(head_inputs()))
        self.register_buffer("std", torch.ones(head_inputs()))
        self.register_buffer("reads", expert_columns())  # (experts, inputs) 0/1: the columns each expert reads
        self.weight = nn.Parameter(torch.zeros(len(EXPERTS), head_inputs()))
        self.bias = nn.Parameter(torch.zeros(len(EXPERTS)))

    def experts(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, experts): each expert's logit."""
        return ((inputs - self.mean) / self.std) @ (self.weight * self.reads).T + self.bias

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # A soft maximum: one expert's strong evidence dominates, weaker evidence of several adds up (on
        # unseen products it measured 0.663 on the visible kinds pooled, the hard maximum 0.642).
        return self.experts(inputs).logsumexp(1)


def expert_columns() -> torch.Tensor:
    """(experts, head_inputs()) 0/1: each expert reads the logs of its COMPARISONS."""
    reads = torch.zeros(len(EXPERTS), head_inputs())
    for row, names in enumerate(EXPERTS.values()):
        reads[row, [COMPARISONS.index(name) for name in names]] = 1
    return reads


class ComparatorModel(nn.Module):
    def __init__(self, products: int, image_size: tuple[int, int], mean, std, pretrained: bool = True) -> None:
        super().__init__()
        width, height = image_size
        if width % STRIDE or height % STRIDE:
            raise ValueError(f"The comparator needs an image size divisible by {STRIDE}; got {width}x{height} "
                             "(e.g. use 320x320).")
        self.features = Lite0Features(image_size, pretrained, stride8_only=True)
        self.head = ComparatorHead().requires_grad_(False)
        cells = (height // STRIDE, width // STRIDE)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("hue_directions", bin_directions(), persistent=False)
        # Enrolled genuines, in float16: estimates from a photo each, 3 significant digits are plenty.
        self.register_buffer("ref_features", torch.zeros(products, MAX_REFERENCES, STRIDE8_CHANNELS, *cells,
                                                         dtype=torch.float16))
        self.register_buffer("ref_pixels", torch.zeros(products, MAX_REFERENCES, 3, *cells, dtype=torch.float16))
        self.register_buffer("ref_hue", torch.full((products, MAX_REFERENCES, HUE_BINS), 1 / HUE_BINS))
        self.register_buffer("ref_lightness", torch.ones(products, MAX_REFERENCES, HUE_BINS))
        self.register_buffer("ref_detail", torch.zeros(products, MAX_REFERENCES))
        self.register_buffer("count", torch.full((products,), MAX_REFERENCES, dtype=torch.int64))
        self.register_buffer("hull", torch.ones(products, *cells))
        self.register_buffer("typical", torch.ones(products, len(COMPARISONS)))
        self.register_buffer("scale", torch.ones(()))  # logit = scale * head + shift (fitted on val)
        self.register_buffer("shift", torch.zeros(()))

    def rgb(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.input_std + self.input_mean

    def describe(self, image: torch.Tensor, hull: torch.Tensor) -> dict[str, torch.Tensor]:
        """A registered photo -> its DESCRIPTIONS: unit features (N, 40, h, w), 8x8-pooled pixels (N, 3, h, w),
        hue histogram over `hull` (N, HUE_BINS), each hue's lightness relative to the print's paper white (N, HUE_BINS),
        and the print's fine detail relative to its surroundings' (N,); and, not compared, the raw features'
        average (`pooled`, N x 40) from which the embedding output is made."""
        rgb = self.rgb(image)
        features = self.features(rgb)
        pixels = F.avg_pool2d(rgb, STRIDE)
        weights, pooled = hue_weights(pixels, hull, self.hue_directions)
        return {"features": features / features.norm(dim=1, keepdim=True).clamp_min(EPS), "pixels": pixels,
                "hue": weights.sum((2, 3)) / weights.sum((1, 2, 3)).unsqueeze(1).clamp_min(EPS),
                "lightness": ink_lightness(weights, pooled, hull), "detail": print_detail(rgb, hull),
                "pooled": features.mean((2, 3))}

    def head_input(self, image: torch.Tensor, product: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (what the head reads (N, 2C), the location-wise feature map (N, h, w))."""
        inputs, feature_map, _ = self._evidence(image, product)
        return inputs, feature_map

    def _evidence(self, image: torch.Tensor, product: torch.Tensor):
        """-> (what the head reads: the log of each of COMPARISONS and its log ratio to `typical` (N, 2C), the
        location-wise feature map (N, h, w), the photo's description): the trunk runs once per photo."""
        hull = self.hull[product]
        photo = self.describe(image, hull)
        empty = torch.arange(MAX_REFERENCES, device=image.device).unsqueeze(0) >= self.count[product].unsqueeze(1)
        genuines = {name: getattr(self, f"ref_{name}")[product].float() for name in DESCRIPTIONS}
        raw, feature_map = compare(photo, genuines, hull, empty)
        logged = raw.clamp_min(EPS).log()
        return torch.cat([logged, logged - self.typical[product].clamp_min(EPS).log()], 1), feature_map, photo

    def forward(self, image: torch.Tensor, product: torch.Tensor):
        inputs, feature_map, photo = self._evidence(image, product)
        half = (self.scale * self.head(inputs) + self.shift) / 2  # softmax of (-half, half) = sigmoid(logit)
        # Evidence in units of what a typical genuine's strongest cell shows.
        heatmap = feature_map / self.typical[product, HEATMAP_UNIT].clamp_min(EPS)[:, None, None]
        embedding = photo["pooled"] / photo["pooled"].norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.stack([-half, half], 1), heatmap, embedding


def ink_lightness(weights: torch.Tensor, pooled: torch.Tensor, hull: torch.Tensor) -> torch.Tensor:
    """(N, HUE_BINS): the mean lightness (HSV value) of each hue's print over the print's paper white (its
    WHITE_CELLS brightest areas): an ink printed lighter or darker moves its hue's entry, a brighter or darker
    exposure moves none. Paper carries no ink; the whole print, the reference this had before, moves with
    its main ink: an ink covering three quarters of the print at lightness 0.6 and printed 0.15 lighter
    moved its entry by 0.06 there, by 0.15 here (on unseen real products, lightness edits: ROC-AUC 0.485
    -> 0.540 for this comparison alone)."""
    value = pooled.amax(1)  # (N, h, w)
    inside = F.avg_pool2d(hull.unsqueeze(1), HUE_POOL).squeeze(1) > 0.5
    brightest = torch.where(inside, value, 0).flatten(1).topk(min(WHITE_CELLS, value[0].numel()), dim=1).values
    per_hue = (weights * value.unsqueeze(1)).sum((2, 3)) / weights.sum((2, 3)).clamp_min(EPS)
    return per_hue / brightest.mean(1, keepdim=True).clamp_min(EPS)


def print_detail(rgb: torch.Tensor, hull: torch.Tensor) -> torch.Tensor:
    """(N,) log of the print's finest detail (1-3 px) over its coarser detail (3-9 px), less the same for the
    rest of the frame: a print reproduced from a copy loses its finest detail, a photo blurred by the hand
    or a lower resolution loses it everywhere."""
    gray = rgb.mean(1, keepdim=True)
    fine, medium = F.avg_pool2d(gray, 3, 1, 1), F.avg_pool2d(gray, 9, 1, 4)
    energy = torch.cat([(gray - fine) ** 2, (fine - medium) ** 2], 1)
    cells = F.avg_pool2d(energy, STRIDE)  # (N, 2, h, w)
    inside, outside = hull.unsqueeze(1), 1 - hull.unsqueeze(1)
    print_ratio = (cells * inside).sum((2, 3))
    rest_ratio = (cells * outside).sum((2, 3))
    ratio = (print_ratio[:, 0] + EPS) / (print_ratio[:, 1] + EPS)
    return ratio.log() - ((rest_ratio[:, 0] + EPS) / (rest_ratio[:, 1] + EPS)).log()


def _nearest(distance: torch.Tensor, empty: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k): the k smallest of (N, R) distances, empty slots left out."""
    return torch.where(empty, FAR, distance).topk(k, dim=1, largest=False).values


def compare(photo: dict, genuines: dict, hull: torch.Tensor, empty: torch.Tensor):
    """COMPARISONS of photos with their products' enrolled genuines -> ((N, C), the feature map (N, h, w)).
    photo: DESCRIPTIONS (model.describe); genuines: the same with a reference axis R after N; hull (N, h, w)
    0/1; empty (N, R) True where a reference slot holds no photo."""
    features, pixels = photo["features"], photo["pixels"]
    ref_features, ref_pixels = genuines["features"], genuines["pixels"]
    far = empty[:, :, None, None]
    feature_d = torch.where(far, FAR, 1 - (ref_features * features.unsqueeze(1)).sum(2))  # (N, R, h, w)
    mask = hull.unsqueeze(1)  # (N, 1, h, w)
    area = mask.sum((2, 3)).clamp_min(1.0)  # (N, 1)
    # The gain (per channel) that brings each genuine to the photo's light, fitted over the print.
    gain = ((pixels.unsqueeze(1) * ref_pixels * mask.unsqueeze(2)).sum((3, 4))
            / ((ref_pixels**2 * mask.unsqueeze(2)).sum((3, 4)) + EPS))  # (N, R, 3)
    colour_d = torch.where(far, FAR, (pixels.unsqueeze(1) - gain[..., None, None] * ref_pixels).abs().mean(2))
    chroma = pixels / (pixels.sum(1, keepdim=True) + 1e-3)
    ref_chroma = ref_pixels / (ref_pixels.sum(2, keepdim=True) + 1e-3)
    chroma_d = torch.where(far, FAR, (chroma.unsqueeze(1) - ref_chroma).abs().sum(2))
    bins = genuines["hue"].shape[2]
    hue_d = hue_distance(photo["hue"].unsqueeze(1).expand_as(genuines["hue"]).reshape(-1, bins),
                         genuines["hue"].reshape(-1, bins)).view(empty.shape)  # (N, R)
    nearest_hue = _nearest(hue_d, empty, HUE_NEAREST)
    # Each hue's lightness, weighted by how much of the genuine's print is in that hue.
    lightness_d = (genuines["hue"] * (photo["lightness"].unsqueeze(1) - genuines["lightness"]).abs()).sum(2)
    nearest_lightness = _nearest(lightness_d, empty, HUE_NEAREST)
    kept = (~empty).float()
    detail_lost = ((genuines["detail"] * kept).sum(1) / kept.sum(1).clamp_min(1) - photo["detail"]).exp()
    parts, whole, maps = [nearest_hue[:, 0], nearest_hue.mean(1)], [], []
    for distance in (feature_d, colour_d, chroma_d):
        whole.append(((distance * mask).sum((2, 3)) / area).amin(1))  # the nearest genuine over the print
        per_location = distance.topk(NEAREST, dim=1, largest=False).values.mean(1) * hull  # (N, h, w)
        strongest = per_location.flatten(1).topk(max(TOP), dim=1).values
        maps.append(per_location)
        parts += [strongest[:, :k].mean(1) for k in TOP] + [per_location.sum((1, 2)) / area[:, 0]]
    ordered = parts[:2] + whole + parts[2:] + [nearest_lightness[:, 0], nearest_lightness.mean(1), detail_lost]
    return torch.stack(ordered, 1), maps[0]


def empty_model(config: TrainConfig, checkpoint: dict, path: Path) -> ComparatorModel:
    """The model a checkpoint's config and product references describe, before its weights are loaded."""
    return products_model(ComparatorModel, config, checkpoint, path)
