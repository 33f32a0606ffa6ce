"""Whether an item's photos can be judged together, and what to photograph when they cannot: every photo
usable, all of one product line, and every side the catalogue lists for that line present.

Product lines come from the model file (`metadata.product_lines`: {line: its sides}). A model that does not
list them (older files: {}) is read by the reference fit's naming of the faces it found for one product
folder, FOLDER-1, FOLDER-2, ... (training/recipes/reference/fit.py): those are one line. Such a model does
not say which sides must be there, so the missing-side check is skipped for it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from api.schemas import ItemPhoto
from inference.classes import RETAKE
from inference.metadata import ModelMetadata

FACE_NUMBER = re.compile(r"-\d+$")  # "Bravo-Apple-Juice-3" is face 3 of the folder Bravo-Apple-Juice
PHOTO_RETAKE, MIXED_PRODUCTS, MISSING_SIDE = "photo_retake", "mixed_products", "missing_side"
REPEATED_PHOTO = "repeated_photo"


@dataclass(frozen=True)
class Retake:
    reason: str  # PHOTO_RETAKE | MIXED_PRODUCTS | MISSING_SIDE | REPEATED_PHOTO
    message: str  # what to photograph, for the person holding the phone
    missing_sides: tuple[str, ...] = ()


def line_of(metadata: ModelMetadata, product: str) -> str:
    if metadata.product_lines:
        return metadata.line_of(product) or product
    return FACE_NUMBER.sub("", product)


def repeated_photo(photos: Sequence[ItemPhoto]) -> Retake | None:
    """The same photo (the same bytes) sent as two sides: one side is not photographed, and the evidence would
    keep one photo twice (issue 24)."""
    first: dict[str, int] = {}
    repeats = []
    for number, photo in enumerate(photos, 1):
        if photo.image.sha256 in first:
            repeats.append((first[photo.image.sha256], number))
        else:
            first[photo.image.sha256] = number
    if not repeats:
        return None
    pairs = "; ".join(f"{_numbers([a, b])} are the same photo" for a, b in repeats)
    return Retake(REPEATED_PHOTO, f"Two sides are the same photo ({pairs}): photograph each side of the item "
                  f"once and send the item again.")


def photo_retake(photos: Sequence[ItemPhoto]) -> Retake | None:
    """Photos that could not be judged (poor photo, or no known product), each with its own advice."""
    bad = [(number, photo) for number, photo in enumerate(photos, 1) if photo.verdict == RETAKE]
    if not bad:
        return None
    advice = "; ".join(f"photo {number}: {photo.quality.message}" for number, photo in bad)
    return Retake(PHOTO_RETAKE, f"Retake {_numbers(n for n, _ in bad)} and send the item again ({advice}).")


def mixed_products(photos: Sequence[ItemPhoto], metadata: ModelMetadata) -> Retake | None:
    """Scored photos of more than one product line: the line most photos show is taken as the item."""
    lines = {number: line_of(metadata, photo.product) for number, photo in enumerate(photos, 1)
             if photo.product is not None}
    counts = Counter(lines.values())
    if len(counts) < 2:
        return None
    if len(set(counts.values())) == 1:  # a tie (1:1, 2:2, ...): no product is "most"
        shown = "; ".join(f"{_numbers(sorted(n for n, v in lines.items() if v == line))} {line}" for line in counts)
        return Retake(MIXED_PRODUCTS, f"The photos show different products, as many of each ({shown}). All photos "
                      "of one item must show the same product: retake the photos of this item, or inspect each "
                      "product as an item of its own.")
    item_line = max(counts, key=lambda line: (counts[line], -min(n for n, v in lines.items() if v == line)))
    strays = sorted(number for number, line in lines.items() if line != item_line)
    shown = ", ".join(f"{_numbers([n])} shows {lines[n]}" for n in strays)
    return Retake(MIXED_PRODUCTS, f"The photos show more than one product: most show {item_line}, {shown}. "
                  f"All photos of one item must show the same product: retake {_numbers(strays)} of this "
                  "item, or inspect the other product as an item of its own.")


def missing_side(photos: Sequence[ItemPhoto], metadata: ModelMetadata) -> Retake | None:
    """A side the catalogue lists for the item's line that no photo shows (only when the model lists lines)."""
    products = {photo.product for photo in photos if photo.product is not None}
    if not metadata.product_lines or not products:
        return None
    line = line_of(metadata, next(iter(products)))
    missing = tuple(side for side in metadata.product_lines.get(line, ()) if side not in products)
    if not missing:
        return None
    return Retake(MISSING_SIDE, f"The catalogue lists {len(metadata.product_lines[line])} sides of {line}; no "
                  f"photo shows {', '.join(missing)}. Photograph {'that side' if len(missing) == 1 else 'those sides'} "
                  "and send the item again with all its photos.", missing)


def _numbers(numbers) -> str:
    numbers = list(numbers)
    if len(numbers) == 1:
        return f"photo {numbers[0]}"
    return "photos " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
