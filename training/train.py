"""Training: fit() fits the config's recipe (training/recipes/); the epoch loop of a recipe trained by
gradient descent (train_one_epoch / evaluate / fit_epochs) in the style of torchvision's classification
reference.

fit_epochs() keeps the best epoch on val (ROC-AUC, then loss), calibrates it on val, saves it atomically as
RUN/checkpoint.pt (RUN/last.pt is the latest epoch), logs RUN/metrics.jsonl and exports RUN/model.onnx.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inference.calibration import calibrate, calibration_problems
from inference.metrics import roc_auc
from training import distributed
from training.checkpoint import save_checkpoint, unwrap
from training.config import TrainConfig
from training.data import PhotoDataset, list_split, train_augmentation
from training.export import export_checkpoint
from training.recipes import get_recipe


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def class_weights(labels: np.ndarray, num_classes: int = 2) -> torch.Tensor:
    """Inverse-frequency loss weights, so a 9:1 imbalance does not teach 'always the majority'."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = counts.sum() / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def train_one_epoch(model, criterion, optimizer, loader, device, desc: str = "") -> dict:
    model.train()
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for images, labels in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not desc):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images)
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    seconds = time.perf_counter() - start
    return {"loss": total_loss / seen, "accuracy": correct / seen, "images_per_s": seen / seconds}


@torch.no_grad()
def evaluate(model, criterion, loader, device) -> tuple[dict, np.ndarray, np.ndarray]:
    """-> (metrics, logits (N, 2), labels (N,)) on the whole loader."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        all_logits.append(model(images.to(device)).float().cpu())
        all_labels.append(labels)
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    loss = criterion(logits, labels).item()
    scores = torch.softmax(logits, 1)[:, 1].numpy()
    metrics = {
        "loss": loss,
        "accuracy": (logits.argmax(1) == labels).float().mean().item(),
        "roc_auc": roc_auc(scores, labels.numpy()),
        "n": len(labels),
    }
    return metrics, logits.numpy(), labels.numpy()


@dataclass
class Loop:
    """Everything an epoch touches; its state is what last.pt saves and --resume restores."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    generator: torch.Generator
    process: distributed.Process

    def state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}

    def restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def make_loaders(config: TrainConfig, generator: torch.Generator, process: distributed.Process, progress: bool):
    spec = config.preprocess_spec()
    train_set = PhotoDataset(list_split(config.data, "train"), spec, train_augmentation(spec),
                             progress="decode train" if progress else "")
    val_set = PhotoDataset(list_split(config.data, "val"), spec, progress="decode val" if progress else "")
    common = {"batch_size": config.batch_size, "num_workers": config.workers,
              "persistent_workers": config.workers > 0}
    sampler = None
    if process.distributed:  # each process trains on its own shard of every epoch
        sampler = torch.utils.data.DistributedSampler(train_set, seed=config.seed)
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=sampler is None, sampler=sampler,
                                               generator=generator, **common)
    val_loader = torch.utils.data.DataLoader(val_set, shuffle=False, **common)
    return train_loader, val_loader


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay from the base lr to 0 over `epochs`, stepped once per epoch.

    Closed-form in the epoch number (not recursive like CosineAnnealingLR), so a run resumed with
    more epochs follows the schedule of the new total.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / epochs)))


def is_better(metrics: dict, best: dict | None) -> bool:
    """Higher val ROC-AUC wins; equal AUC (common on small val sets) falls back to lower loss."""
    if best is None:
        return True
    auc, best_auc = np.nan_to_num(metrics["roc_auc"]), np.nan_to_num(best["roc_auc"])
    return auc > best_auc or (auc == best_auc and metrics["loss"] < best["loss"])


def fit(config: TrainConfig, progress: bool = True, resume: bool = False) -> dict:
    """Fit the config's recipe and export RUN/model.onnx; with resume, continue RUN/last.pt.
    -> {"best": val metrics, "model": path, "version", "warnings"}. Raises ValueError on bad input."""
    return get_recipe(config.recipe).fit(config, progress=progress, resume=resume)


def fit_epochs(config: TrainConfig, make_loop: Callable[[TrainConfig, distributed.Process, bool], Loop],
               progress: bool = True, resume: bool = False) -> dict:
    """Train the Loop that make_loop(config, process, progress) builds, keep the best epoch, export."""
    process = distributed.setup(config.device)
    progress = progress and process.is_main
    out = Path(config.out)
    try:
        loop = make_loop(config, process, progress)
        start, best = restore_run(loop, out / "last.pt") if resume else (1, None)
        if process.is_main:
            start_run_folder(out, config, keep_epochs_before=start)
        best = run_epochs(config, loop, start, best, progress)
        distributed.barrier(process)
        if not process.is_main:
            return {"best": best}
        metadata = export_checkpoint(out / "checkpoint.pt", out / "model.onnx")
        return {"best": best, "model": str(out / "model.onnx"), "version": metadata.version,
                "warnings": metadata.metrics.get("warnings", [])}
    finally:
        distributed.teardown(process)


def start_run_folder(out: Path, config: TrainConfig, keep_epochs_before: int) -> None:
    """Write config.json; keep only the metrics of epochs before the first one this run will do."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    kept = [line for line in lines if json.loads(line)["epoch"] < keep_epochs_before]
    metrics.write_text("".join(line + "\n" for line in kept))


def resume_config(run: Path, epochs: int | None = None) -> TrainConfig:
    """The config a run was started with (from RUN/last.pt), optionally with more epochs."""
    last = Path(run) / "last.pt"
    if not last.is_file():
        raise ValueError(f"Cannot resume: {last} does not exist (has {run} completed an epoch?).")
    values = torch.load(last, map_location="cpu", weights_only=True)["config"]
    if epochs is not None:
        values["epochs"] = epochs
    return TrainConfig.from_checkpoint({**values, "out": str(run)})


def restore_run(loop: Loop, last: Path) -> tuple[int, dict | None]:
    """-> (first epoch to run, best val metrics so far) from a previous run's last.pt."""
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    unwrap(loop.model).load_state_dict(checkpoint["model"])
    loop.restore(checkpoint["loop"])
    return checkpoint["epoch"] + 1, checkpoint.get("best")


def run_epochs(config: TrainConfig, loop: Loop, start: int, best: dict | None, progress: bool) -> dict | None:
    out, main = Path(config.out), loop.process.is_main
    board = tensorboard_writer(out) if main else None
    for epoch in range(start, config.epochs + 1):
        record, logits, labels = run_epoch(loop, epoch, config.epochs, progress)
        improved = is_better({"roc_auc": record["val_roc_auc"], "loss": record["val_loss"]}, best)
        if improved:
            best = {"roc_auc": record["val_roc_auc"], "loss": record["val_loss"],
                    "accuracy": record["val_accuracy"], "epoch": epoch}
        if main:
            save_epoch(config, loop, record, best, (logits, labels) if improved else None, board)
        if progress:
            tqdm.write(_epoch_line(record, best))
        if config.patience and epoch - best["epoch"] >= config.patience:
            if progress:
                tqdm.write(f"early stop: no val improvement for {config.patience} epochs")
            break
    return best


def run_epoch(loop: Loop, epoch: int, epochs: int, progress: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    if isinstance(loop.train_loader.sampler, torch.utils.data.DistributedSampler):
        loop.train_loader.sampler.set_epoch(epoch)  # a different shuffle every epoch, agreed by all ranks
    desc = f"epoch {epoch}/{epochs}" if progress else ""
    train_metrics = train_one_epoch(loop.model, loop.criterion, loop.optimizer, loop.train_loader,
                                    loop.process.device, desc)
    loop.scheduler.step()
    val_metrics, logits, labels = evaluate(unwrap(loop.model), loop.criterion, loop.val_loader, loop.process.device)
    record = {"epoch": epoch, "lr": loop.optimizer.param_groups[0]["lr"],
              **{f"train_{k}": v for k, v in train_metrics.items()}, **{f"val_{k}": v for k, v in val_metrics.items()}}
    return record, logits, labels


def save_epoch(config: TrainConfig, loop: Loop, record: dict, best: dict, val_outputs, board) -> None:
    """Append metrics; save last.pt (to resume) and, when val improved, the calibrated checkpoint.pt."""
    out = Path(config.out)
    with (out / "metrics.jsonl").open("a") as metrics_file:
        metrics_file.write(json.dumps(record) + "\n")
    if board is not None:
        for key, value in record.items():
            board.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
        board.flush()
    save_checkpoint(out / "last.pt", loop.model, config, epoch=record["epoch"], metrics=record, best=best,
                    loop=loop.state())
    if val_outputs is not None:
        temperature, thresholds = calibrate(*val_outputs, config.target_precision)
        calibration = {"temperature": temperature, **thresholds.to_dict(),
                       "warnings": calibration_problems(*val_outputs, temperature, thresholds, config.target_precision)}
        save_checkpoint(out / "checkpoint.pt", loop.model, config, epoch=record["epoch"], metrics=record,
                        calibration=calibration)


def tensorboard_writer(out: Path):
    """A SummaryWriter into RUN/tensorboard when tensorboard is installed, else None."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _epoch_line(record: dict, best: dict) -> str:
    return (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.3f} "
            f"({record['train_images_per_s']:.0f} img/s) | val loss {record['val_loss']:.4f} "
            f"acc {record['val_accuracy']:.3f} auc {record['val_roc_auc']:.4f} | best epoch {best['epoch']}")
