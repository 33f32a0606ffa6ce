"""Export: torch model -> self-describing ONNX file, verified before it is written.

Verification: the ONNX checker, then the file is loaded by the very Predictor the server uses and its
logits on real preprocessed images must equal torch's within `tolerance`.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from inference.classes import CLASSES
from inference.layout import Sample, image_files, list_split
from inference.metadata import ModelMetadata, Thresholds
from inference.predictor import (
    EMBEDDING_NAME,
    HEATMAP_NAME,
    INPUT_NAME,
    LOGITS_NAME,
    Predictor,
)
from training.checkpoint import load_checkpoint
from training.data import PhotoDataset
from training.model import WithHeatmap

OPSET = 17
TOLERANCE = 1e-4  # max |onnxruntime - torch| on logits


class ExportError(RuntimeError):
    """The exported file failed its verification; nothing was written."""


def export(model: nn.Module, metadata: ModelMetadata, out: Path, images: np.ndarray, tolerance=TOLERANCE):
    """Write `out` (atomically) and return the metadata with its version filled in."""
    model = model.eval().cpu()
    proto = onnx.load_from_string(_trace(model, metadata))
    metadata = stamp_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    try:
        _check_parity(model, tmp, images, tolerance)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return metadata


def _trace(model: nn.Module, metadata: ModelMetadata) -> bytes:
    spec = metadata.preprocess
    dummy = torch.zeros(1, 3, spec.height, spec.width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo, which takes ~25x longer for
        # these plain CNNs and needs onnxscript; the graph is verified against torch below either way.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            WithHeatmap(model).eval(), (dummy,), buffer, input_names=[INPUT_NAME],
            output_names=[LOGITS_NAME, HEATMAP_NAME, EMBEDDING_NAME],
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, LOGITS_NAME, HEATMAP_NAME, EMBEDDING_NAME)},
            opset_version=OPSET, dynamo=False,
        )
    return buffer.getvalue()


def stamp_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> ModelMetadata:
    """Write the metadata; its version is the SHA-256 of the model serialised with an empty version."""
    _set_props(proto, replace(metadata, version="").to_props())
    version = hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()[:16]
    metadata = replace(metadata, version=version)
    _set_props(proto, metadata.to_props())
    return metadata


def _set_props(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        proto.metadata_props.add(key=key, value=value)


def _check_parity(model: nn.Module, path: Path, images: np.ndarray, tolerance: float) -> None:
    if len(images) == 0:
        raise ExportError("No images to verify the export on.")
    predictor = Predictor(path)  # also proves the metadata is complete and the signature right
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = predictor.logits(images)
    worst = float(np.abs(got - expected).max())
    if not worst <= tolerance:
        raise ExportError(f"onnxruntime and torch disagree by {worst:.2e} on the logits (tolerance {tolerance:.0e}).")


def metadata_from_checkpoint(checkpoint: dict, config) -> ModelMetadata:
    calibration = checkpoint.get("calibration") or {"temperature": 1.0, "low": 0.5, "high": 0.5}
    return ModelMetadata(
        name=config.name or Path(config.out).name or "counterfeit-detector",
        version="",
        classes=CLASSES,
        preprocess=config.preprocess_spec(),
        thresholds=Thresholds(calibration["low"], calibration["high"]),
        temperature=float(calibration["temperature"]),
        train_config=config.to_dict(),
        metrics=dict(checkpoint.get("metrics") or {}),
    )


def verification_images(samples: list[Sample], spec, count: int = 8) -> np.ndarray:
    """A few real photos (both classes when available), preprocessed as in serving."""
    by_label = [s for s in samples if s.label == 0][: count // 2] + [s for s in samples if s.label == 1][: count // 2]
    chosen = by_label or samples[:count]
    dataset = PhotoDataset(chosen, spec)
    return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])


def export_checkpoint(checkpoint_path: Path, out: Path, images_root: Path | None = None) -> ModelMetadata:
    """`counterfeit export`: checkpoint -> verified ONNX, checked on images from images_root or the run's val data."""
    model, config, checkpoint = load_checkpoint(checkpoint_path)
    root = images_root or Path(config.data)
    samples = _samples_under(root)
    if not samples:
        raise ExportError(f"No images found under {root} to verify the export on: pass --images DIR.")
    images = verification_images(samples, config.preprocess_spec())
    return export(model, metadata_from_checkpoint(checkpoint, config), out, images)


def _samples_under(root: Path) -> list[Sample]:
    """val/ of a DATA root if present, else any images under root (labels unknown, so all as 0)."""
    if (root / "val").is_dir():
        return list_split(root, "val")
    return [Sample(p, 0, "") for p in image_files(root)] if root.is_dir() else []
