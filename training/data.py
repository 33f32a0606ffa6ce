"""Data: the DATA/{train,val,test}/{genuine,counterfeit}/... layout -> torch datasets.

Images are decoded by inference.images and preprocessed by inference.preprocess, exactly as in
serving. Each photo is decoded and letterboxed once and kept in memory (a 320x240 RGB frame is
230 kB), so epochs after the first cost only augmentation and the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from tqdm import tqdm

from inference.images import ImageError
from inference.layout import DataError, Sample, list_split  # noqa: F401  (re-exported for training)
from inference.predictor import decode
from inference.preprocess import PreprocessSpec, letterbox, normalise


def decode_frame(path: Path, spec: PreprocessSpec) -> Image.Image:
    """File -> the letterboxed model-size frame, through the serving decoder (inference.predictor.decode)."""
    try:
        loaded = decode(path.read_bytes(), spec)
    except ImageError as exc:
        raise DataError(f"{path}: {exc.message}") from exc
    return letterbox(loaded.image, spec)


def train_augmentation(spec: PreprocessSpec) -> Callable[[Image.Image], Image.Image]:
    """Mild, cue-preserving augmentation: small pose and light changes.

    No flips (they mirror the printing), no crops (they cut the product out), no hue jitter (a shifted
    colour is itself a counterfeit cue).
    """
    fill = [round(m * 255) for m in spec.mean]
    return v2.Compose([
        v2.RandomAffine(degrees=8, translate=(0.04, 0.04), scale=(0.92, 1.08), fill=fill),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ])


class PhotoDataset(torch.utils.data.Dataset):
    """(normalised CHW float tensor, label) pairs; frames decoded once, augmented per access."""

    def __init__(self, samples: list[Sample], spec: PreprocessSpec, augment=None, progress: str = "") -> None:
        self.samples, self.spec, self.augment = samples, spec, augment
        items = tqdm(samples, desc=progress, unit="img", leave=False, disable=not progress)
        self.frames = [np.asarray(decode_frame(s.path, spec)) for s in items]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frame = Image.fromarray(self.frames[index])
        if self.augment is not None:
            frame = self.augment(frame)
        return torch.from_numpy(normalise(frame, self.spec)), self.samples[index].label

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])
