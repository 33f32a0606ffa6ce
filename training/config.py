"""The training config: one typed dataclass, loadable from TOML, saved resolved in RUN/config.json,
and carried inside every checkpoint so a model is never rebuilt by guesswork."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from training.recipes import DEFAULT_RECIPE, get_recipe

# reference: register each photo to its product's genuine reference and compare it location by location
# with the registered genuines (training/recipes/reference/): no epochs. classifier: a CNN trained end to
# end on the whole frame (training/recipes/classifier/); it stays at chance on packaging photos (README,
# "Model quality"). Each recipe's name, defaults and own fields: training/recipes/__init__.py.
# Checkpoints from before the reference recipe existed name no recipe: they are all classifiers.
UNNAMED_RECIPE = "classifier"
OPTIMIZERS = ("adamw", "sgd")
# Architectures offered: small enough to train on a CPU; each ends in one nn.Linear head.
ARCHS = ("mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50", "efficientnet_b0")


@dataclass
class TrainConfig:
    data: str = ""  # DATA root holding train/ and val/ (and optionally test/)
    out: str = ""  # RUN folder
    name: str = ""  # model name written into the model file; default: the RUN folder's name
    recipe: str = DEFAULT_RECIPE  # reference | classifier; the fields only one reads: its options (training/recipes/)
    arch: str = "mobilenet_v3_small"
    weights: str = "none"  # none | PATH to a local state_dict | a torchvision weights name (needs internet)
    epochs: int = 10
    patience: int = 0  # early stopping: stop after this many epochs without val improvement; 0 = off
    image_size: tuple[int, int] | None = None  # model input width, height (pixels); the frame is letterboxed.
    # None: the recipe's default_image_size (640x480 keeps lettering a few pixels high; 320x240)
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    target_precision: float = 0.99  # per class, for the decided verdicts; sets the thresholds
    seed: int = 0
    workers: int = 0  # DataLoader worker processes; 0 = load in the training process
    device: str = "auto"  # auto | cpu | cuda
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict = field(default_factory=dict)  # free-form notes carried along (e.g. the data audit)

    def __post_init__(self) -> None:
        recipe = get_recipe(self.recipe)  # ValueError for an unknown name
        self.image_size = tuple(int(v) for v in (self.image_size or recipe.default_image_size))
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.validate()

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"Invalid arch {self.arch!r}. Only {', '.join(ARCHS)} are supported.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Invalid optimizer {self.optimizer!r}. Only {', '.join(OPTIMIZERS)} are supported.")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.5 <= self.target_precision < 1.0:
            raise ValueError(f"target_precision must be in [0.5, 1), got {self.target_precision}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        self.preprocess_spec()  # validates the image size
        self._check_image_divisor()

    def _check_image_divisor(self) -> None:
        recipe = get_recipe(self.recipe)
        if any(side % recipe.image_divisor for side in self.image_size):
            raise ValueError(f"The {recipe.name} recipe needs an image size divisible by {recipe.image_divisor} "
                             f"({recipe.image_divisor_why}); got {self.image_size[0]}x{self.image_size[1]}, "
                             f"e.g. use {recipe.default_size_text}.")

    def preprocess_spec(self) -> PreprocessSpec:
        width, height = self.image_size
        return PreprocessSpec(width=width, height=height, mean=self.mean, std=self.std)

    def to_dict(self) -> dict:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown config keys: {', '.join(unknown)}. Known keys: {', '.join(sorted(known))}.")
        return cls(**values)

    @classmethod
    def from_checkpoint(cls, values: dict) -> TrainConfig:
        """The config a checkpoint carries (its "config" entry)."""
        return cls.from_dict({"recipe": UNNAMED_RECIPE, **values})

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"Cannot read config {path}: {exc}") from exc
        return cls.from_dict(values)


def parse_image_size(text: str) -> tuple[int, int]:
    """'320x240' -> (320, 240); '256' -> (256, 256)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 8:
        raise ValueError(f"Invalid image size {text!r}: give WIDTHxHEIGHT in pixels, e.g. 320x240.")
    return (values[0], values[-1])
