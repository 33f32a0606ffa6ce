"""The one definition of preprocessing: RGB image -> normalised float32 CHW array.

Training's dataset, evaluation and the predictor all call `preprocess` with the spec stored in the
model file, so a photo becomes the same tensor everywhere. No torch here: serving must not need it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    width: int  # model input, pixels
    height: int
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per channel, on [0, 1] pixel values
    std: tuple[float, float, float] = IMAGENET_STD
    # The whole frame is kept: it is resized to fit inside width x height with its aspect ratio, and the
    # rest is padded with the mean colour. Cropping could cut away the very print detail that matters.
    resize: str = "letterbox"

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"Input size {self.width}x{self.height} is too small: use at least 8x8 pixels.")
        if self.resize != "letterbox":
            raise ValueError(f"Invalid resize mode {self.resize!r}. Only 'letterbox' is supported.")
        finite = all(math.isfinite(v) for v in (*self.mean, *self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or not finite or min(self.std) <= 0:  # NaN fails `> 0` only
            raise ValueError("mean and std need 3 finite values each, and std must be positive.")

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PreprocessSpec:
        return cls(
            width=int(values["width"]),
            height=int(values["height"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
            resize=str(values.get("resize", "letterbox")),
        )


def letterbox(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize to fit inside the model input keeping the aspect ratio; pad with the mean colour."""
    scale = min(spec.width / image.width, spec.height / image.height)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=None)
    if new_size == spec.size:
        return resized
    fill = tuple(round(m * 255) for m in spec.mean)
    canvas = Image.new("RGB", spec.size, fill)
    canvas.paste(resized, ((spec.width - new_size[0]) // 2, (spec.height - new_size[1]) // 2))
    return canvas


def normalise(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """RGB image of the input size -> float32 array (3, H, W), (pixel/255 - mean) / std."""
    planes = np.asarray(image).transpose(2, 0, 1)  # uint8 (3, H, W), a view
    # A 256-entry table per channel gives exactly the float32 arithmetic of computing every pixel, in half
    # the time (0.7 vs 1.4 ms at 320x240 here): on the request's hot path.
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    table = (np.arange(256, dtype=np.float32)[:, None] * np.float32(1 / 255) - mean) / std  # (256, 3)
    return np.stack([table[:, channel][planes[channel]] for channel in range(3)])


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    return normalise(letterbox(image, spec), spec)
