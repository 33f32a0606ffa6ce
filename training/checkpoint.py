"""Checkpoints: weights plus the config they were built from, written atomically, read weights-only."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from inference.atomic import atomic_path
from training.config import TrainConfig
from training.recipes import get_recipe


class CheckpointError(ValueError):
    """The checkpoint is unreadable or lacks what is needed to rebuild the model."""


def save_checkpoint(path: Path, model: nn.Module, config: TrainConfig, **fields) -> None:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken checkpoint."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    payload = {"model": state, "config": config.to_dict(), **fields}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, TrainConfig, dict]:
    """-> (model in eval mode, its config, the whole checkpoint dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}).") from exc
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path} is not a counterfeit-detector checkpoint (no 'model' and 'config' entries).")
    config = TrainConfig.from_checkpoint(checkpoint["config"])
    model = get_recipe(config.recipe).empty_model(config, checkpoint, path)  # the architecture, before its weights
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match its config ({config.recipe} recipe, arch {config.arch}): "
                              f"{str(exc)[:300]}") from exc
    return model.eval(), config, checkpoint


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper, if any."""
    return getattr(model, "module", model)
