"""The classifier recipe's model: a torchvision classifier with a 2-class head, weight loading that says
what did not fit, and the graph it is exported as (logits, heatmap and embedding in one)."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from inference.classes import CLASSES
from inference.predictor import INPUT_NAME
from training.config import ARCHS, TrainConfig


class WeightsError(ValueError):
    """Weights could not be loaded; the message says which and why."""


def build(arch: str, num_classes: int = len(CLASSES)) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"Invalid arch {arch!r}. Only {', '.join(ARCHS)} are supported.")
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def split(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(features -> (N, C, h, w) map, head: pooled (N, C) -> logits) of a torchvision classifier.

    model(x) == head(features(x).mean((2, 3))) for every architecture in ARCHS.
    """
    if isinstance(model, torchvision.models.ResNet):
        stem = [model.conv1, model.bn1, model.relu, model.maxpool]
        return nn.Sequential(*stem, model.layer1, model.layer2, model.layer3, model.layer4), model.fc
    return model.features, model.classifier  # MobileNetV3, EfficientNet


class WithHeatmap(nn.Module):
    """The classifier plus what serving needs besides logits, computed in the same graph:

    - heatmap[n, i, j] = counterfeit minus genuine logit of feature-map location (i, j): where the
      evidence for 'counterfeit' is. For a linear head (ResNet, EfficientNet) it is exactly CAM (Zhou
      et al. 2016); for MobileNetV3's two-layer head it is the same idea applied per location.
    - embedding[n] = the pooled features, L2-normalised: photos of the same goods lie close together,
      which links a seizure to the listings that show it (evidence store).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features, self.head = split(model)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feature_map = self.features(images)
        pooled = feature_map.mean((2, 3))
        per_location = self.head(feature_map.permute(0, 2, 3, 1))  # (N, h, w, classes)
        embedding = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.head(pooled), per_location[..., 1] - per_location[..., 0], embedding


def empty_model(config: TrainConfig, checkpoint: dict, path: Path) -> nn.Module:
    """The architecture a checkpoint's config names, before its weights are loaded."""
    return build(config.arch)


def export_graph(model: nn.Module, image: torch.Tensor) -> tuple[nn.Module, tuple, list[str]]:
    """(module to export, example inputs, input names): the classifier reads the image alone."""
    return WithHeatmap(model).eval(), (image,), [INPUT_NAME]


def head_name(model: nn.Module) -> str:
    """Qualified name of the last Linear layer: the classifier head."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]


def load_weights(model: nn.Module, arch: str, weights: str) -> list[str]:
    """Load `weights` (none | PATH | torchvision name) into `model`; return the head keys left as initialised.

    Pretrained weights usually have another head (1000 ImageNet classes): a head whose shape differs is
    re-initialised. Any other key that is missing, unexpected or mis-shaped is an error listing them.
    """
    if weights == "none":
        return []
    if Path(weights).is_file():
        state = _read_state_dict(Path(weights))
    else:
        state = _torchvision_state_dict(arch, weights)
    return _load_matching(model, state, weights)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as exc:
        raise WeightsError(f"{path} is not a loadable weights file ({type(exc).__name__}: {str(exc)[:200]}).") from exc
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None  # our checkpoints nest it
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a dict of parameter name -> tensor).")
    return state


def _torchvision_state_dict(arch: str, name: str) -> dict[str, torch.Tensor]:
    try:
        enum = torchvision.models.get_model_weights(arch)
        entry = enum.DEFAULT if name == "DEFAULT" else enum[name]
    except (KeyError, ValueError) as exc:
        names = ", ".join(w.name for w in torchvision.models.get_model_weights(arch))
        raise WeightsError(
            f"Invalid weights {name!r}: give none, a path to a local state_dict file, or a torchvision name "
            f"for {arch} ({names}, DEFAULT)."
        ) from exc
    try:
        return entry.get_state_dict(progress=False)
    except Exception as exc:  # URLError, socket errors, ...: this machine may have no internet
        raise WeightsError(
            f"Could not download torchvision weights {arch}/{entry.name} ({type(exc).__name__}: {str(exc)[:120]}). "
            "Without internet, pass --weights PATH to a local state_dict file."
        ) from exc


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    own = model.state_dict()
    head = head_name(model) + "."
    reinitialised = [k for k in own if k.startswith(head) and k in state and state[k].shape != own[k].shape]
    state = {k: v for k, v in state.items() if k not in reinitialised}
    missing = sorted(set(own) - set(state) - set(reinitialised))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or misshaped:
        raise WeightsError(
            f"Weights {source} do not fit this architecture: "
            + "; ".join(
                f"{label}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''} ({len(keys)})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
                if keys
            )
        )
    model.load_state_dict(state, strict=False)
    return reinitialised
