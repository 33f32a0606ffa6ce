"""A reference model's catalogue, torch-free: which products it knows, their product lines (sides), how
many genuine photos each was fitted from, and a small reference image of each (what the inspector sees
beside a photo to confirm the match). Kept in the model file's metadata (inference/metadata.py `catalogue`,
`product_lines`); written at training (training/recipes/reference/fit.py) and by `counterfeit catalogue
add/remove` (training/catalogue.py); read by `counterfeit catalogue list` and GET /v1/model.
"""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

THUMBNAIL_SIDE = 160  # pixels, the longer side of a product's reference image: enough to recognise it
THUMBNAIL_QUALITY = 80  # JPEG quality: ~4-8 KB each, so 50 products add well under 1 MB to the model file
DATA_URI_PREFIX = "data:image/jpeg;base64,"
MAX_DATA_URI = 64 * 1024  # characters: a 160 px JPEG never comes near; a larger value is no thumbnail of ours
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def thumbnail_data_uri(image: Image.Image) -> str:
    """A small JPEG of `image` (longer side THUMBNAIL_SIDE px at most) as a data: URI, for the metadata."""
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return DATA_URI_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def checked_data_uri(value) -> str:
    """A reference image from an (untrusted) model file: a bounded base64 JPEG data: URI, or ValueError."""
    text = str(value)
    body = text[len(DATA_URI_PREFIX):]
    if not text.startswith(DATA_URI_PREFIX) or len(text) > MAX_DATA_URI or not _BASE64.match(body):
        raise ValueError(f"a reference image must be a base64 JPEG data: URI of at most {MAX_DATA_URI} characters")
    return text


def checked_catalogue(values: dict, products: list[str]) -> dict[str, dict]:
    """{product: {"photos": int, "reference_image": data URI}} of a model file, each key one of its products;
    either entry may be absent (not known)."""
    known, checked = set(products), {}
    for product, entry in values.items():
        if product not in known:
            raise ValueError(f"catalogue names {product!r}, which is none of the model's products")
        fields = {}
        if entry.get("photos") is not None:
            fields["photos"] = int(entry["photos"])
            if fields["photos"] < 0:
                raise ValueError(f"catalogue[{product!r}].photos is negative")
        if entry.get("reference_image") is not None:
            fields["reference_image"] = checked_data_uri(entry["reference_image"])
        checked[str(product)] = fields
    return checked


def line_sides(folders: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """{product: the dataset folder it came from} -> {line: (products...)}: a folder is a product line, the
    products registration found in it are its sides. Photos not in a product folder form the line 'product'."""
    lines: dict[str, tuple[str, ...]] = {}
    for product, folder in folders.items():
        lines[folder or "product"] = (*lines.get(folder or "product", ()), product)
    return lines


def with_side(lines: dict[str, tuple[str, ...]], line: str, product: str) -> dict[str, tuple[str, ...]]:
    """The product lines with `product` added as one more side of `line` (a new line if there is none)."""
    return {**lines, line: (*lines.get(line, ()), product)}


def without_side(lines: dict[str, tuple[str, ...]], product: str) -> dict[str, tuple[str, ...]]:
    """The product lines without `product`; a line left with no side is dropped."""
    kept = {line: tuple(side for side in sides if side != product) for line, sides in lines.items()}
    return {line: sides for line, sides in kept.items() if sides}


def catalogue_entries(metadata) -> list[dict]:
    """What GET /v1/model lists per product, in the model's order: {"product", "line", "photos",
    "reference_image"} (None where the model file does not say)."""
    return [{"product": reference.product, "line": metadata.line_of(reference.product),
             "photos": metadata.catalogue.get(reference.product, {}).get("photos"),
             "reference_image": metadata.catalogue.get(reference.product, {}).get("reference_image")}
            for reference in metadata.references]


def catalogue_table(metadata) -> str:
    """`counterfeit catalogue list`: one line per product."""
    rows = [("product", "line", "photos", "reference image")]
    for entry in catalogue_entries(metadata):
        rows.append((entry["product"], entry["line"] or "-", "?" if entry["photos"] is None else str(entry["photos"]),
                     "yes" if entry["reference_image"] else "no"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
