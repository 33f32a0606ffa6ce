"""The classifier's fit: the shared epoch loop (training/train.py) around a torchvision CNN, trained with
inverse-frequency weighted cross-entropy, AdamW or SGD and a cosine schedule."""

from __future__ import annotations

from torch import nn

from training import distributed
from training.config import TrainConfig
from training.recipes.classifier.model import build, load_weights
from training.train import (
    Loop,
    class_weights,
    cosine_schedule,
    fit_epochs,
    make_loaders,
    make_optimizer,
    seed_everything,
)


def fit(config: TrainConfig, progress: bool = True, resume: bool = False) -> dict:
    """Train, keep the best epoch, export. With resume, continue RUN/last.pt."""
    return fit_epochs(config, make_loop, progress, resume)


def make_loop(config: TrainConfig, process: distributed.Process, progress: bool) -> Loop:
    generator = seed_everything(config.seed)
    model = build(config.arch)
    load_weights(model, config.arch, config.weights)  # before decoding data: fail fast on bad weights
    model = distributed.wrap(model.to(process.device), process)
    train_loader, val_loader = make_loaders(config, generator, process, progress)
    weights = class_weights(train_loader.dataset.labels()).to(process.device)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    optimizer = make_optimizer(config, model)
    scheduler = cosine_schedule(optimizer, config.epochs)
    return Loop(model, criterion, optimizer, scheduler, train_loader, val_loader, generator, process)
