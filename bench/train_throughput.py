"""Benchmark: does data loading starve the model? Training images/s through the real DataLoader
(cached decoded frames + augmentation + normalisation) vs the pure forward/backward rate on the same
batches already in memory, side by side in one run. Goal: ratio >= 0.8. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from datatools.synth import write_dataset
from training.config import TrainConfig
from training.distributed import Process
from training.recipes.classifier.fit import make_loop
from training.train import train_one_epoch


def pure_step_rate(model: nn.Module, optimizer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Images/s of forward + backward + step alone, on tensors that are already made."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for images, labels in batches:
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return sum(len(labels) for _, labels in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="training photos (640x480 synth)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp) / "data", seed=0, products=2, n_train=args.images, n_val=8, n_test=2, progress=False)
        config = TrainConfig(data=str(Path(tmp) / "data"), out=str(Path(tmp) / "run"), recipe="classifier",
                             workers=args.workers)
        loop = make_loop(config, Process(), progress=False)
        start = time.perf_counter()
        train_one_epoch(loop.model, loop.criterion, loop.optimizer, loop.train_loader, torch.device("cpu"))
        warm_up = time.perf_counter() - start  # first epoch: also warms up the allocator and kernels
        batches = list(loop.train_loader)  # the very batches the loader makes, now held in memory
        start = time.perf_counter()
        train_one_epoch(loop.model, loop.criterion, loop.optimizer, loop.train_loader, torch.device("cpu"))
        loader_rate = len(loop.train_loader.dataset) / (time.perf_counter() - start)
        pure_rate = pure_step_rate(loop.model, loop.optimizer, batches)
    print(f"training throughput: {config.arch} at {config.image_size[0]}x{config.image_size[1]}, batch "
          f"{config.batch_size}, {args.workers} workers, {torch.get_num_threads()} threads (warm-up epoch {warm_up:.1f} s)")
    print(f"  through the DataLoader: {loader_rate:7.1f} img/s")
    print(f"  pure forward/backward:  {pure_rate:7.1f} img/s")
    print(f"  ratio:                  {loader_rate / pure_rate:7.2f}x (goal >= 0.80)")


if __name__ == "__main__":
    main()
