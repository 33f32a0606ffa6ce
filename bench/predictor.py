"""Benchmark: predictor throughput, onnxruntime vs torch eager, on the same model and the same images.

One torch model (the classifier recipe's architecture and input size) is exported to ONNX in a temporary
folder; both runtimes then score the same preprocessed synth photos, side by side in this one run, at
batch 1 and at the server's largest batch (inference.predictor.MAX_BATCH, 32). Prints images/s and the
ratio. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datatools.synth import write_dataset
from inference.layout import list_split
from inference.predictor import MAX_BATCH, Predictor
from training.config import TrainConfig
from training.export import export, metadata_from_checkpoint, verification_images
from training.recipes.classifier.model import build


def images_per_second(run, batch: np.ndarray, min_seconds: float) -> float:
    """Repeat `run(batch)` for at least min_seconds after one warm-up call."""
    run(batch)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or calls < 3:
        run(batch)
        calls += 1
    return calls * len(batch) / elapsed


def classifier_config() -> TrainConfig:
    """The classifier recipe's defaults (mobilenet_v3_small, 320x240): a plain CNN, the same in both runtimes."""
    return TrainConfig(recipe="classifier")


def prepare(workdir: Path, config: TrainConfig, count: int):
    """-> (torch model, onnx Predictor, preprocessed images (count, 3, H, W)) for the same model."""
    write_dataset(workdir / "data", seed=0, products=2, n_train=2, n_val=count, n_test=2, progress=False)
    torch.manual_seed(0)
    model = build(config.arch).eval()
    checkpoint = {"calibration": {"temperature": 1.0, "low": 0.5, "high": 0.5}}
    metadata = metadata_from_checkpoint(checkpoint, config)
    images, _ = verification_images(list_split(workdir / "data", "val"), metadata, count=count)
    export(model, metadata, workdir / "model.onnx", images)
    return model, Predictor(workdir / "model.onnx"), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    args = parser.parse_args()
    config = classifier_config()
    # Randomly initialised nets produce denormal activations that slow x86 float math by ~100x in
    # torch (onnxruntime's kernels do not suffer); flushing them keeps the comparison about runtimes.
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as tmp:
        model, predictor, images = prepare(Path(tmp), config, count=MAX_BATCH)

        def torch_eager(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(batch)).numpy()

        print(f"predictor throughput: {config.arch} at {config.image_size[0]}x{config.image_size[1]}, "
              f"{torch.get_num_threads()} torch threads, CPU")
        print(f"{'batch':>5}  {'onnxruntime img/s':>18}  {'torch eager img/s':>18}  {'ratio ort/torch':>15}")
        for batch_size in (1, MAX_BATCH):
            batch = images[:batch_size]
            ort_rate = images_per_second(predictor.logits, batch, args.seconds)
            torch_rate = images_per_second(torch_eager, batch, args.seconds)
            print(f"{batch_size:>5}  {ort_rate:>18.1f}  {torch_rate:>18.1f}  {ort_rate / torch_rate:>14.2f}x")


if __name__ == "__main__":
    main()
