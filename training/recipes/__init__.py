"""The recipes `counterfeit train --recipe NAME` can fit, in one registry (as timm registers models).

A recipe is a folder, training/recipes/NAME/, holding its model, its fit and its export graph. Its entry
here says what it is called, what it is for, which TrainConfig fields are its own, and where its functions
live. This module imports nothing heavy: the CLI reads it to build `counterfeit train --help`, and the
serving commands must not pay for torch (tests/test_torch_free.py). A recipe's functions are imported when
first called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple  # not dataclasses: it imports `inspect`, 20 ms more for every `counterfeit --help`

DEFAULT_RECIPE = "reference"


def lazy(module: str, name: str) -> Callable:
    """`module.name`, imported on its first call: the recipes' modules import torch."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"{module}.{name}"
    return call


def flag(field: str) -> str:
    """The `counterfeit train` flag of a TrainConfig field: batch_size -> --batch-size."""
    return "--" + field.replace("_", "-")


class Option(NamedTuple):
    """A `counterfeit train` flag that sets the TrainConfig field of the same name (--batch-size: batch_size)."""

    field: str
    help: str
    type: Callable[[str], object] = str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return flag(self.field)


class Recipe(NamedTuple):
    """What `counterfeit train --recipe NAME` fits, and where its functions live (lazy() keeps torch out)."""

    name: str
    help: str  # one line, for `counterfeit train --help`
    default_image_size: tuple[int, int]  # model input width, height (pixels) when the config names none
    fitted: str  # how `counterfeit train` sums up the fit; str.format-ted with the best val metrics
    fit: Callable  # (config, progress=True, resume=False) -> {"best", "model", "version", "warnings"}
    empty_model: Callable  # (config, checkpoint dict, checkpoint path) -> nn.Module to load the weights into
    export_graph: Callable  # (model, example image) -> (module to export, example inputs, input names)
    options: tuple[str, ...] = ()  # TrainConfig fields only this recipe reads, in the order notes name their flags
    ignores: str = ""  # why it ignores the other recipes' options, e.g. "has no epochs or network to train"
    image_divisor: int = 1  # the model input's width and height must be multiples of this (pixels) ...
    image_divisor_why: str = ""  # ... because of this

    @property
    def default_size_text(self) -> str:
        """The default image size as --image-size takes it, e.g. 640x480."""
        width, height = self.default_image_size
        return f"{width}x{height}"


_RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add a recipe; its name must be new."""
    if recipe.name in _RECIPES:
        raise ValueError(f"A recipe named {recipe.name!r} is registered already.")
    _RECIPES[recipe.name] = recipe
    return recipe


def recipe_names() -> list[str]:
    """Registered recipe names, in the order registered: the default first."""
    return list(_RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Invalid recipe {name!r}. Only {', '.join(_RECIPES)} are supported.") from None


def ignored_options(name: str, given: list[str]) -> tuple[list[str], list[str]]:
    """Of the TrainConfig fields given, those that other recipes own and recipe `name` does not read (in their
    owners' order) -> (those fields, their owners)."""
    own = set(get_recipe(name).options)
    foreign = {field: recipe.name for recipe in _RECIPES.values() for field in recipe.options if field not in own}
    ignored = [field for field in foreign if field in given]
    return ignored, list(dict.fromkeys(foreign[field] for field in ignored))


def recipe_help() -> str:
    """The --recipe help: every recipe, the default first."""
    return "; ".join(f"{recipe.name}{' (default)' if recipe.name == DEFAULT_RECIPE else ''}: {recipe.help}"
                     for recipe in _RECIPES.values())


def image_size_help() -> str:
    """The --image-size help, with the default recipe's default size and then the others'."""
    sizes = [("" if recipe.name == DEFAULT_RECIPE else f"{recipe.name} ") + recipe.default_size_text
             for recipe in _RECIPES.values()]
    return f"model input WIDTHxHEIGHT in pixels (default {'; '.join(sizes)})"


def train_options() -> tuple[Option, ...]:
    """The `counterfeit train` flags after --recipe, in the order its --help lists them."""
    return (
        Option("arch", "classifier: torchvision architecture (default mobilenet_v3_small)"),
        Option("weights", "none | PATH to a local state_dict | torchvision weights name (needs internet)"),
        Option("epochs", "epochs (default 10); with --resume, the new total", int),
        Option("patience", "stop after this many epochs without val improvement (0: off)", int),
        Option("image_size", image_size_help()),
        Option("batch_size", "images per step (default 16)", int),
        Option("lr", "learning rate (default 1e-3)", float),
        Option("target_precision", "precision each decided verdict must reach on val (0.99)", float),
        Option("workers", "DataLoader worker processes (default 0)", int),
        Option("device", "default auto: a GPU when present", choices=("auto", "cpu", "cuda")),
        Option("seed", "random seed (default 0)", int),
    )


register(Recipe(
    name="reference",
    help="compare each photo, registered, with its product's genuine photos",
    default_image_size=(640, 480),  # keeps lettering a few pixels high
    fitted="reference model fitted",
    fit=lazy("training.recipes.reference.fit", "fit"),
    empty_model=lazy("training.recipes.reference.model", "empty_model"),
    export_graph=lazy("training.recipes.reference.model", "export_graph"),
    ignores="has no epochs or network to train",
    image_divisor=16,
    image_divisor_why="its 2x2 pixel and 8x8 feature cells",
))
register(Recipe(
    name="comparator",
    help="enrol each product's genuine photos into a comparator trained once on real photo pairs",
    default_image_size=(320, 320),  # real phone photos of packages are often square, ~350 px
    fitted="comparator enrolled",
    fit=lazy("training.recipes.comparator.fit", "fit"),
    empty_model=lazy("training.recipes.comparator.model", "empty_model"),
    export_graph=lazy("training.recipes.reference.model", "export_graph"),  # the same inputs: photo, product
    ignores="has no epochs or network to train",
    image_divisor=8,
    image_divisor_why="its 8x8 pixel cells",
))
register(Recipe(
    name="classifier",
    help="a CNN on the whole frame (the options below up to --lr are its own)",
    default_image_size=(320, 240),
    fitted="best epoch {epoch}",
    fit=lazy("training.recipes.classifier.fit", "fit"),
    empty_model=lazy("training.recipes.classifier.model", "empty_model"),
    export_graph=lazy("training.recipes.classifier.model", "export_graph"),
    options=("arch", "weights", "epochs", "batch_size", "lr", "workers", "device", "patience", "optimizer",
             "weight_decay", "label_smoothing"),
))
