"""What a model file must say about itself, stored as JSON strings in the ONNX metadata_props.

Training writes it (training/export.py), the predictor reads it: classes, preprocessing, calibration,
thresholds, version and the config the model was trained from. Nothing is guessed at serving time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from inference.align import Reference, references_from_json, references_to_json
from inference.catalogue import catalogue_entries, checked_catalogue
from inference.classes import CLASSES
from inference.preprocess import PreprocessSpec
from inference.provenance import demo_notice, validated_on_real_photos

FORMAT = "counterfeit-detector/1"
REQUIRED_KEYS = ("format", "name", "version", "classes", "preprocess", "thresholds", "temperature")
# The softmax temperatures `counterfeit calibrate` can choose (inference/calibration.py searches this range;
# 1.0 is an uncalibrated model). Outside it a file was not calibrated by this software: refused.
TEMPERATURE_RANGE = (0.05, 20.0)
MAX_INPUT_SIDE = 4096  # pixels: one such float32 input is already 200 MB; nothing trained here comes near


class ModelFileError(ValueError):
    """The model file is unusable: unreadable, not ONNX, or its metadata is missing or wrong."""


@dataclass(frozen=True)
class Thresholds:
    """Counterfeit when score >= high, genuine when score <= low, inconclusive between."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"Thresholds need 0 <= low <= high <= 1; got low={self.low}, high={self.high}.")

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: str  # content hash of the model file (inference/onnx_wire.py), stamped at export, checked at load
    classes: tuple[str, ...]
    preprocess: PreprocessSpec
    thresholds: Thresholds
    temperature: float  # logits are divided by it before the softmax (calibration)
    train_config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    # Reference models (recipe "reference"): each product's genuine keypoints. A photo is registered to
    # them and resampled into its product's frame before the model sees it (inference/align.py).
    references: tuple[Reference, ...] = ()
    # Product lines and their sides: {line: (product, ...)}, e.g. {"juice": ("juice-1", "juice-2")} for a
    # carton's front and back, which registration tells apart as two products. Empty: not known.
    product_lines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per product, what the catalogue knows (inference/catalogue.py): {"photos": genuine photos fitted from,
    # "reference_image": a small JPEG data: URI of its reference}. Either may be absent; empty: not known.
    catalogue: dict[str, dict] = field(default_factory=dict)
    # What the model was trained and validated on (inference/provenance.py); empty: the file does not say,
    # and the model is treated as a demo, not validated on real photos.
    provenance: dict = field(default_factory=dict)

    def line_of(self, product: str) -> str | None:
        """The product line a product (a side) belongs to, or None when the model does not say."""
        return next((line for line, sides in self.product_lines.items() if product in sides), None)

    def to_props(self) -> dict[str, str]:
        """The metadata as ONNX metadata_props: every value JSON-encoded."""
        values = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "classes": list(self.classes),
            "preprocess": self.preprocess.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "temperature": self.temperature,
            "train_config": self.train_config,
            "metrics": self.metrics,
        }
        if self.references:
            values["references"] = references_to_json(list(self.references))
        if self.product_lines:
            values["product_lines"] = {line: list(sides) for line, sides in self.product_lines.items()}
        if self.catalogue:
            values["catalogue"] = self.catalogue
        if self.provenance:
            values["provenance"] = self.provenance
        return {key: json.dumps(value, sort_keys=True) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise ModelFileError(
                f"The model file's metadata lacks {', '.join(missing)}: export it with `counterfeit export`."
            )
        try:
            values = {key: json.loads(text) for key, text in props.items()}
            metadata = _from_values(values)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFileError(f"The model file's metadata is invalid: {exc}") from exc
        return metadata

    def public(self) -> dict:
        """What clients may see (GET /v1/model)."""
        return {
            "name": self.name,
            "version": self.version,
            "classes": list(self.classes),
            "input": {"width": self.preprocess.width, "height": self.preprocess.height},
            "preprocess": self.preprocess.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "temperature": self.temperature,
            "metrics": self.metrics,
            "train_config": self.train_config,
            "products": [r.product for r in self.references],  # empty: no registration (whole-frame model)
            "product_lines": {line: list(sides) for line, sides in self.product_lines.items()},
            "catalogue": catalogue_entries(self),  # per product: line, photos, reference_image (data: URI)
            "provenance": self.provenance,  # trained_on / validated_on: data, photos (synthetic|real), counts
            "validated_on_real_photos": validated_on_real_photos(self.provenance),
            "notice": demo_notice(self.provenance),  # the page's banner; None for a model validated on real photos
        }


def _from_values(values: dict) -> ModelMetadata:
    if (values.get("product_lines") or values.get("catalogue")) and not values.get("references"):
        raise ValueError("it names products (product_lines, catalogue) but carries no references, which the "
                         "model's 'product' input is the index of: export the model again")
    if values["format"] != FORMAT:
        raise ValueError(f"format is {values['format']!r}, this software reads {FORMAT!r}")
    classes = tuple(str(c) for c in values["classes"])
    if classes != CLASSES:
        raise ValueError(f"classes are {list(classes)}, expected {list(CLASSES)}")
    return ModelMetadata(
        name=str(values["name"]),
        version=str(values["version"]),
        classes=classes,
        preprocess=_checked_preprocess(values["preprocess"]),
        thresholds=_checked_thresholds(values["thresholds"]),
        temperature=_checked_temperature(values["temperature"]),
        train_config=dict(values.get("train_config") or {}),
        metrics=dict(values.get("metrics") or {}),
        references=tuple(references_from_json(values["references"])) if values.get("references") else (),
        product_lines=_checked_lines(values.get("product_lines") or {},
                                     (values.get("references") or {}).get("products", [])),
        catalogue=checked_catalogue(values.get("catalogue") or {},
                                    (values.get("references") or {}).get("products", [])),
        provenance=_checked_provenance(values.get("provenance") or {}),
    )


def _checked_provenance(value) -> dict:
    """A dict of dicts (trained_on, validated_on) of short JSON values; anything else is not ours."""
    if not isinstance(value, dict) or not all(isinstance(part, dict) for part in value.values()):
        raise ValueError("provenance must map trained_on/validated_on to objects")
    return value


def _checked_lines(lines: dict, products: list) -> dict[str, tuple[str, ...]]:
    """{line: sides}, each side one of the model's products and in one line only."""
    known = set(products)
    checked: dict[str, tuple[str, ...]] = {}
    for line, sides in lines.items():
        checked[str(line)] = tuple(str(side) for side in sides)
        strangers = [side for side in checked[str(line)] if side not in known]
        if strangers:
            raise ValueError(f"product_lines[{line!r}] names {strangers[0]!r}, which is none of the model's products")
    every = [side for sides in checked.values() for side in sides]
    if len(every) != len(set(every)):
        raise ValueError("product_lines names a product in more than one line")
    return checked


def _checked_temperature(value) -> float:
    temperature = float(value)
    low, high = TEMPERATURE_RANGE
    if not low <= temperature <= high:  # NaN fails too
        raise ValueError(f"temperature is {temperature!r}; it must lie in [{low}, {high}], the range calibration "
                         "searches: re-calibrate the model with `counterfeit calibrate`")
    return temperature


def _checked_thresholds(values: dict) -> Thresholds:
    """Finite, 0 <= low <= high <= 1, and not a band that gives every photo the same verdict."""
    low, high = float(values["low"]), float(values["high"])
    for name, value in (("low", low), ("high", high)):
        if not 0.0 <= value <= 1.0:  # NaN and infinities fail too
            raise ValueError(f"thresholds.{name} is {value!r}; thresholds must lie in [0, 1]")
    if high <= 0.0 or low >= 1.0:
        every = "counterfeit" if high <= 0.0 else "genuine"
        raise ValueError(f"thresholds are low={low!r}, high={high!r}: every photo would be called {every}; "
                         "re-calibrate the model with `counterfeit calibrate`")
    return Thresholds(low, high)


def _checked_preprocess(values: dict) -> PreprocessSpec:
    """The spec, once each statistic is known finite (PreprocessSpec lets NaN through) and the size bounded."""
    for index, mean in enumerate(values["mean"]):
        if not 0.0 <= float(mean) <= 1.0:  # a mean of pixel values in [0, 1]; NaN fails too
            raise ValueError(f"preprocess.mean[{index}] is {float(mean)!r}; it must lie in [0, 1]")
    for index, std in enumerate(values["std"]):
        if not (math.isfinite(float(std)) and float(std) > 0):
            raise ValueError(f"preprocess.std[{index}] is {float(std)!r}; it must be a finite number above 0")
    for name in ("width", "height"):
        if int(values[name]) > MAX_INPUT_SIDE:
            raise ValueError(f"preprocess.{name} is {int(values[name])} pixels; at most {MAX_INPUT_SIDE} are supported")
    return PreprocessSpec.from_dict(values)
