"""Export: torch model -> self-describing ONNX file, verified before it is written.

Verification: the ONNX checker, then the file is loaded by the very Predictor the server uses and its
calibrated scores on real preprocessed images must equal torch's within `tolerance`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from inference.align import NotRecognised, references_from_json
from inference.atomic import atomic_path
from inference.classes import CLASSES, COUNTERFEIT
from inference.images import ImageError
from inference.layout import Sample, image_files, list_split
from inference.metadata import ModelMetadata, Thresholds
from inference.predictor import (
    EMBEDDING_NAME,
    HEATMAP_NAME,
    LOGITS_NAME,
    Predictor,
    decode,
    prepare,
    softmax_scores,
    stacked,
)
from inference.provenance import provenance
from training.checkpoint import load_checkpoint
from training.config import UNNAMED_RECIPE
from training.data import PhotoDataset
from training.recipes import get_recipe
from training.stamp import stamp_metadata
from training.val_edits import VAL_EDITED_WARNING

OPSET = 17
# max |onnxruntime - torch| on the calibrated scores (0..1), what a verdict is made of. Not on the logits:
# their scale is the model's (a reference model fitted on well-separated val photos has logits in the
# hundreds), and float32 agrees to a relative 1e-6 or so; a real set's export failed at 1.5e-4 on logits.
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported file failed its verification; nothing was written."""


def export(model: nn.Module, metadata: ModelMetadata, out: Path, images: np.ndarray, tolerance=TOLERANCE,
           products: np.ndarray | None = None):
    """Write `out` (atomically) and return the metadata with its version filled in. A reference model
    (metadata with references) takes each image's product index too."""
    model = model.eval().cpu()
    proto = onnx.load_from_string(_trace(model, metadata))
    metadata = stamp_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        _check_parity(model, tmp, images, products, tolerance)
    return metadata


def _graph(model: nn.Module, metadata: ModelMetadata) -> tuple[nn.Module, tuple, list[str]]:
    """(module whose outputs are logits, heatmap, embedding; example inputs; input names), as the model's
    recipe exports it."""
    spec = metadata.preprocess
    recipe = get_recipe(metadata.train_config.get("recipe", UNNAMED_RECIPE))
    return recipe.export_graph(model, torch.zeros(1, 3, spec.height, spec.width))


def _trace(model: nn.Module, metadata: ModelMetadata) -> bytes:
    graph, example, input_names = _graph(model, metadata)
    names = [*input_names, LOGITS_NAME, HEATMAP_NAME, EMBEDDING_NAME]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo, which takes ~25x longer for
        # these plain CNNs and needs onnxscript; the graph is verified against torch below either way.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, example, buffer, input_names=input_names, output_names=names[len(input_names):],
            dynamic_axes={name: {0: "batch"} for name in names}, opset_version=OPSET, dynamo=False,
        )
    return buffer.getvalue()


def _check_parity(model: nn.Module, path: Path, images: np.ndarray, products: np.ndarray | None,
                  tolerance: float) -> None:
    if len(images) == 0:
        raise ExportError("No images to verify the export on.")
    predictor = Predictor(path)  # also proves the metadata is complete and the signature right
    with torch.no_grad():
        if predictor.aligns:
            expected = model(torch.from_numpy(images), torch.from_numpy(np.asarray(products, np.int64)))[0].numpy()
        else:
            expected = model(torch.from_numpy(images)).numpy()
    expected = softmax_scores(expected, predictor.metadata.temperature, 1)
    got = predictor.scores(images, products)
    worst = float(np.abs(got - expected).max())
    if not worst <= tolerance:
        raise ExportError(f"onnxruntime and torch disagree by {worst:.2e} on the calibrated scores "
                          f"(tolerance {tolerance:.0e}).")


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
        metrics={**(checkpoint.get("metrics") or {}), **_warnings(calibration)},
        references=tuple(references_from_json(checkpoint["references"])) if checkpoint.get("references") else (),
        provenance=_provenance(config.data, calibration),
        **_catalogue(checkpoint),
    )


def _provenance(data: str, calibration: dict) -> dict:
    """What the model learned from (DATA/train) and was calibrated on (DATA/val); val counterfeits the
    trainer made by editing genuines (training/val_edits.py) are said to be edited."""
    edited = VAL_EDITED_WARNING in (calibration.get("warnings") or [])
    return provenance(Path(data) / "train", Path(data) / "val", val_counterfeits="edited" if edited else None)


def _catalogue(checkpoint: dict) -> dict:
    """The product lines and per-product catalogue entries a reference fit saved (none in older checkpoints)."""
    saved = checkpoint.get("catalogue") or {}
    return {"product_lines": {line: tuple(sides) for line, sides in (saved.get("product_lines") or {}).items()},
            "catalogue": dict(saved.get("products") or {})}


def _warnings(calibration: dict) -> dict:
    """What calibration on val found wrong (inference.calibration.calibration_problems), kept in the model
    file's metrics so that the model card and GET /v1/model say it too; nothing when all is well."""
    return {"warnings": list(calibration["warnings"])} if calibration.get("warnings") else {}


def verification_images(samples: list[Sample], metadata: ModelMetadata,
                        count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A few real photos (both classes when available), prepared as in serving -> (arrays, products)."""
    by_label = [s for s in samples if s.label == 0][: count // 2] + [s for s in samples if s.label == 1][: count // 2]
    chosen = by_label or samples[:count]
    if not metadata.references:
        dataset = PhotoDataset(chosen, metadata.preprocess)
        return np.stack([dataset[i][0].numpy() for i in range(len(dataset))]), np.zeros(len(dataset), np.int64)
    prepared = []
    for sample in chosen + [s for s in samples if s not in chosen]:  # unrecognised photos test no graph
        try:
            image = decode(sample.path.read_bytes(), metadata.preprocess).image
            prepared.append(prepare(image, metadata.preprocess, metadata.references))
        except (ImageError, NotRecognised):
            continue
        if len(prepared) == count:
            break
    if not prepared:
        raise ExportError("None of the verification photos shows one of the model's products: pass --images DIR.")
    return stacked(prepared)


def export_checkpoint(checkpoint_path: Path, out: Path, images_root: Path | None = None) -> ModelMetadata:
    """`counterfeit export`: checkpoint -> verified ONNX, checked on images from images_root or the run's val data."""
    model, config, checkpoint = load_checkpoint(checkpoint_path)
    root = images_root or Path(config.data)
    samples = _samples_under(root)
    if not samples:
        raise ExportError(f"No images found under {root} to verify the export on: pass --images DIR.")
    metadata = metadata_from_checkpoint(checkpoint, config)
    images, products = verification_images(samples, metadata)
    return export(model, metadata, out, images, products=products)


def _samples_under(root: Path) -> list[Sample]:
    """val/ of a DATA root if present, else any images under root (labels unknown, so all as 0)."""
    if (root / "val").is_dir():  # genuines alone will do (a comparator's val may have no counterfeits)
        return list_split(root, "val", optional=(COUNTERFEIT,))
    return [Sample(p, 0, "") for p in image_files(root)] if root.is_dir() else []
