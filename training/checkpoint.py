"""Checkpoints: weights plus the config they were built from, written atomically, read weights-only."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from training.config import TrainConfig
from training.model import build


class CheckpointError(ValueError):
    """The checkpoint is unreadable or lacks what is needed to rebuild the model."""


def save_checkpoint(path: Path, model: nn.Module, config: TrainConfig, **fields) -> None:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken checkpoint."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    payload = {"model": state, "config": config.to_dict(), **fields}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


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
    # Checkpoints from before the reference recipe existed name no recipe: they are all classifiers.
    config = TrainConfig.from_dict({"recipe": "classifier", **checkpoint["config"]})
    model = _empty_model(config, checkpoint, path)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match its config ({config.recipe} recipe, arch {config.arch}): "
                              f"{str(exc)[:300]}") from exc
    return model.eval(), config, checkpoint


def _empty_model(config: TrainConfig, checkpoint: dict, path: Path) -> nn.Module:
    """The architecture the config names, before its weights are loaded."""
    if config.recipe != "reference":
        return build(config.arch)
    from training.reference_model import ReferenceModel

    products = len((checkpoint.get("references") or {}).get("products") or [])
    if not products:
        raise CheckpointError(f"{path} is a reference-recipe checkpoint without its product references.")
    spec = config.preprocess_spec()
    return ReferenceModel(products, config.image_size, spec.mean, spec.std, pretrained=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper, if any."""
    return getattr(model, "module", model)
