"""Training: train_one_epoch / evaluate / fit, in the style of torchvision's classification reference.

fit() keeps the best epoch on val (ROC-AUC, then loss), calibrates it on val, saves it atomically as
RUN/checkpoint.pt (RUN/last.pt is the latest epoch), logs RUN/metrics.jsonl and exports RUN/model.onnx.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from inference.calibration import calibrate
from inference.metrics import roc_auc
from training.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.data import PhotoDataset, list_split, train_augmentation
from training.export import export_checkpoint
from training.model import build, load_weights


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available: use --device cpu.")
    return torch.device(name)


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


def make_loaders(config: TrainConfig, generator: torch.Generator, progress: bool):
    spec = config.preprocess_spec()
    train_set = PhotoDataset(list_split(config.data, "train"), spec, train_augmentation(spec),
                             progress="decode train" if progress else "")
    val_set = PhotoDataset(list_split(config.data, "val"), spec, progress="decode val" if progress else "")
    common = {"batch_size": config.batch_size, "num_workers": config.workers,
              "persistent_workers": config.workers > 0}
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True, generator=generator, drop_last=False, **common)
    val_loader = torch.utils.data.DataLoader(val_set, shuffle=False, **common)
    return train_loader, val_loader


def is_better(metrics: dict, best: dict | None) -> bool:
    """Higher val ROC-AUC wins; equal AUC (common on small val sets) falls back to lower loss."""
    if best is None:
        return True
    auc, best_auc = np.nan_to_num(metrics["roc_auc"]), np.nan_to_num(best["roc_auc"])
    return auc > best_auc or (auc == best_auc and metrics["loss"] < best["loss"])


def fit(config: TrainConfig, progress: bool = True) -> dict:
    """Train, keep the best epoch, export. Returns a summary; raises DataError/ValueError on bad input."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    generator = seed_everything(config.seed)
    device = pick_device(config.device)
    model = build(config.arch)
    load_weights(model, config.arch, config.weights)  # before decoding data: fail fast on bad weights
    model.to(device)
    train_loader, val_loader = make_loaders(config, generator, progress)
    criterion = nn.CrossEntropyLoss(
        weight=class_weights(train_loader.dataset.labels()).to(device), label_smoothing=config.label_smoothing)
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    best = run_epochs(config, model, criterion, optimizer, scheduler, (train_loader, val_loader), device, progress)
    metadata = export_checkpoint(out / "checkpoint.pt", out / "model.onnx")
    return {"best": best, "model": str(out / "model.onnx"), "version": metadata.version}


def run_epochs(config, model, criterion, optimizer, scheduler, loaders, device, progress) -> dict:
    out, (train_loader, val_loader), best = Path(config.out), loaders, None
    metrics_file = (out / "metrics.jsonl").open("w")
    for epoch in range(1, config.epochs + 1):
        desc = f"epoch {epoch}/{config.epochs}" if progress else ""
        train_metrics = train_one_epoch(model, criterion, optimizer, train_loader, device, desc)
        scheduler.step()
        val_metrics, logits, labels = evaluate(model, criterion, val_loader, device)
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                  **{f"train_{k}": v for k, v in train_metrics.items()}, **{f"val_{k}": v for k, v in val_metrics.items()}}
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        save_checkpoint(out / "last.pt", model, config, epoch=epoch, metrics=record)
        if is_better(val_metrics, best):
            best = {**val_metrics, "epoch": epoch}
            temperature, thresholds = calibrate(logits, labels, config.target_precision)
            calibration = {"temperature": temperature, "low": thresholds.low, "high": thresholds.high}
            save_checkpoint(out / "checkpoint.pt", model, config, epoch=epoch, metrics=record, calibration=calibration)
        if progress:
            tqdm.write(_epoch_line(record, best))
    metrics_file.close()
    return best


def _epoch_line(record: dict, best: dict) -> str:
    return (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.3f} "
            f"({record['train_images_per_s']:.0f} img/s) | val loss {record['val_loss']:.4f} "
            f"acc {record['val_accuracy']:.3f} auc {record['val_roc_auc']:.4f} | best epoch {best['epoch']}")
