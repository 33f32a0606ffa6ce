"""The reference model: a registered photo compared, location by location, with its product's genuine
photos, as one exportable graph (issue 3).

Inputs: `image` (N, 3, H, W), a photo already registered into its product's reference frame and
normalised as the preprocess spec says (inference/align.py, inference/preprocess.py), and `product` (N,)
int64. Outputs, as the classifier's: `logits` (N, 2), `heatmap` (N, H/8, W/8), `embedding` (N, 152).

Per product it holds statistics of the registered train genuines (no counterfeit is needed to fit them):
- the per-location mean and spread of frozen Lite0 features and of 2x2-averaged pixels;
- where the print is steady (`gain_mask`, `scored`) and its average colour there (`light`);
- for the colour check (photometric.py): the genuine print (`template`), where the light is
  fitted (`print_mask`), where the residual is read (`colour_scored`) and the genuines' spread of its
  window means (`window_spread`).
For features and pixels a photo is first brought to the genuines' light level (a per-channel gain, read
on the steady print); the colour check fits the photo's light itself. The hue check compares the
photo's hue histogram over the print with the genuines' (`hue_reference`, hue.py). The photo's
score is the largest squared z-score of each of the three maps and the hue distance, each standardised on
the val genuines (log scale) and fused by max; `scale`/`shift` map it to a logit.

The standardisation (`centre`, `spread`) is held per product, (products, 4): training fills every row with
the one standardisation of all val genuines, and `counterfeit catalogue add` gives a product added later
its own row (training/catalogue.py), so that adding one leaves the others' scores bit for bit as they were.
`scale`/`shift`, temperature and thresholds stay shared. Older files with one shared row load as before.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inference.predictor import INPUT_NAME, PRODUCT_NAME
from training.checkpoint import CheckpointError
from training.config import TrainConfig
from training.recipes.reference.hue import HUE_BINS, bin_directions, hue_distance, hue_histogram
from training.recipes.reference.lite0 import FEATURE_CHANNELS, STRIDE, Lite0Features
from training.recipes.reference.photometric import fit_residual, light_basis, window_z

PIXEL_POOL = 2  # pixel statistics on 2x2 means: a one-pixel registration error matters less
FEATURE_EPS = 1e-3  # added to feature spreads (units of Lite0 activations)
PIXEL_EPS = 0.02  # added to pixel spreads (fraction of full scale): JPEG and sensor noise
SCORES = ("features", "pixels", "colour", "hue")  # the raw scores, in the order of `centre` and `spread`
# The buffers indexed by the `product` input, first axis = product: what `counterfeit catalogue add/remove`
# grows or shrinks (training/catalogue.py). Every other buffer is shared by all products.
PER_PRODUCT_BUFFERS = ("feature_mean", "feature_std", "pixel_mean", "pixel_std", "gain_mask", "scored", "template",
                       "print_mask", "window_spread", "colour_scored", "light", "hue_reference", "centre", "spread")
SHARED_BUFFERS = ("scale", "shift")  # fitted on val for all products at training; kept as they are after


class ReferenceModel(nn.Module):
    def __init__(self, products: int, image_size: tuple[int, int], mean, std, pretrained: bool = True) -> None:
        super().__init__()
        width, height = image_size
        if width % (STRIDE * PIXEL_POOL) or height % (STRIDE * PIXEL_POOL):
            raise ValueError(f"The reference recipe needs an image size divisible by {STRIDE * PIXEL_POOL}; "
                             f"got {width}x{height} (e.g. use 640x480).")
        self.features = Lite0Features(image_size, pretrained)
        cells, pixels = (height // STRIDE, width // STRIDE), (height // PIXEL_POOL, width // PIXEL_POOL)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))
        # The per-location statistics are kept in float16: they are estimates from a few hundred photos
        # (3 significant digits are plenty), and the model file halves (15 MB for 3 products at 640x480).
        for name, shape in (("feature_mean", (FEATURE_CHANNELS, *cells)), ("feature_std", (FEATURE_CHANNELS, *cells)),
                            ("pixel_mean", (3, *pixels)), ("pixel_std", (3, *pixels)), ("gain_mask", pixels),
                            ("scored", pixels), ("template", (3, *pixels)), ("print_mask", pixels),
                            ("window_spread", (3, *pixels)), ("colour_scored", pixels)):
            self.register_buffer(name, torch.ones(products, *shape, dtype=torch.float16))
        self.register_buffer("light", torch.ones(products, 3))
        self.register_buffer("hue_reference", torch.full((products, HUE_BINS), 1 / HUE_BINS))  # genuines' mean
        self.register_buffer("hue_directions", bin_directions(), persistent=False)
        self.register_buffer("light_basis", light_basis(*pixels), persistent=False)  # a function of the size
        self.register_buffer("centre", torch.zeros(products, len(SCORES)))  # of the val genuines' log scores
        self.register_buffer("spread", torch.ones(products, len(SCORES)))
        self.register_buffer("scale", torch.ones(()))  # logit = scale * fused + shift (fitted on val)
        self.register_buffer("shift", torch.zeros(()))

    def rgb(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.input_std + self.input_mean

    def gain(self, pixels: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        """(N, 3, 1, 1): the per-channel gain bringing a photo to the genuines' light level, read on the steady
        print of its 2x2-averaged pixels."""
        mask = self.gain_mask[product].float().unsqueeze(1)  # (N, 1, h, w)
        level = (pixels * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1.0)
        return (self.light[product] / (level + 1e-3)).unsqueeze(-1).unsqueeze(-1)

    def colour_residual(self, pixels: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        """What the photo's own light cannot explain of its 2x2-averaged pixels (N, 3, h2, w2)."""
        return fit_residual(pixels, self.template[product].float(), self.print_mask[product].float(),
                            self.light_basis)

    def hue_histogram(self, pixels: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        """(N, HUE_BINS): the hues of the 2x2-averaged pixels over the product's print (hue.py)."""
        return hue_histogram(pixels, self.print_mask[product].float(), self.hue_directions)

    def z_maps(self, image: torch.Tensor, product: torch.Tensor):
        """-> ([feature z^2 (N, h8, w8), pixel z^2 (N, h2, w2), colour z^2 (N, h2, w2)], features, hue
        distance (N,)); each map is zero off the print."""
        rgb = self.rgb(image)
        pixels = F.avg_pool2d(rgb, PIXEL_POOL)  # read by all four checks
        hue = hue_distance(self.hue_histogram(pixels, product), self.hue_reference[product])
        colour_z = window_z(self.colour_residual(pixels, product), self.window_spread[product].float(),
                            self.colour_scored[product].float())
        gain = self.gain(pixels, product)
        features = self.features(rgb * gain)
        feature_z = (((features - self.feature_mean[product].float()) / self.feature_std[product].float()) ** 2).mean(1)
        scored = self.scored[product].float()
        cells = F.max_pool2d(scored.unsqueeze(1), STRIDE // PIXEL_POOL).squeeze(1)  # (N, h8, w8)
        pixel_z = (((pixels * gain - self.pixel_mean[product].float()) / self.pixel_std[product].float()) ** 2).mean(1)
        return [feature_z * cells, pixel_z * scored, colour_z], features, hue

    def raw_scores(self, image: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        """(N, 4) in the order of SCORES, what `centre`/`spread` standardise: the log of the largest z^2 of
        each map, and the log of the hue distance."""
        maps, _, hue = self.z_maps(image, product)
        return _raw(maps, hue)

    def forward(self, image: torch.Tensor, product: torch.Tensor):
        maps, features, hue = self.z_maps(image, product)
        fused = ((_raw(maps, hue) - self.centre[product]) / self.spread[product]).amax(1)
        half = (self.scale * fused + self.shift) / 2  # softmax of (-half, half) = sigmoid(logit)
        pooled = features.mean((2, 3))
        embedding = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.stack([-half, half], 1), self.heatmap(maps, product), embedding

    def heatmap(self, maps: list[torch.Tensor], product: torch.Tensor) -> torch.Tensor:
        """(N, h8, w8): feature and colour evidence, each in units of a typical genuine's peak (exp(centre))."""
        feature_z, _, colour_z = maps
        colour_cells = F.max_pool2d(colour_z.unsqueeze(1), STRIDE // PIXEL_POOL).squeeze(1)
        typical = self.centre[product].exp()[:, :, None, None]  # (N, 4, 1, 1)
        return torch.maximum(feature_z / typical[:, 0], colour_cells / typical[:, 2])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints from before the per-product standardisation hold one shared row (4,): every product
        gets it, which is what those models computed."""
        for name in ("centre", "spread"):
            key = prefix + name
            if key in state_dict and state_dict[key].dim() == 1:
                state_dict[key] = state_dict[key].expand_as(getattr(self, name)).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _raw(maps: list[torch.Tensor], hue: torch.Tensor) -> torch.Tensor:
    peaks = torch.stack([*(z.flatten(1).amax(1) for z in maps), hue], 1)
    return torch.log(peaks.clamp_min(1e-6))


def empty_model(config: TrainConfig, checkpoint: dict, path: Path) -> ReferenceModel:
    """The model a checkpoint's config and product references describe, before its weights are loaded."""
    return products_model(ReferenceModel, config, checkpoint, path)


def products_model(model_class, config: TrainConfig, checkpoint: dict, path: Path) -> nn.Module:
    """An empty model of a recipe with per-product tensors (reference, comparator), sized by the checkpoint's
    product references."""
    products = len((checkpoint.get("references") or {}).get("products") or [])
    if not products:
        raise CheckpointError(f"{path} is a {config.recipe}-recipe checkpoint without its product references.")
    spec = config.preprocess_spec()
    return model_class(products, config.image_size, spec.mean, spec.std, pretrained=False)


def export_graph(model: nn.Module, image: torch.Tensor) -> tuple[nn.Module, tuple, list[str]]:
    """(module to export, example inputs, input names): the registered photo and its product's index (the
    reference and comparator recipes alike)."""
    return model, (image, torch.zeros(1, dtype=torch.int64)), [INPUT_NAME, PRODUCT_NAME]
