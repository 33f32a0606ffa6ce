"""Deterministic synthetic photos of product packaging, genuine vs counterfeit.

Every product has a flat *genuine artwork*: base colour, colour bands, a brand name in
a specific font, a geometric logo, a product-line name, fine print, a barcode and a
holographic sticker. A *counterfeit* is that artwork with exactly one printing defect
(see ``DEFECT_KINDS``). Both classes then pass through the same photo pipeline (box
geometry, background, lighting, blur, noise, JPEG), so only the printed artwork
separates them.

Only numpy and Pillow do the work; matplotlib is imported solely to locate its bundled
TTF fonts. Each image is drawn from its own seeded generator, so the same seed gives
byte-identical files whatever the order of generation.
"""
from __future__ import annotations

import colorsys
import contextlib
import csv
import functools
import io
import math
import multiprocessing
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from inference.provenance import write_origin

DEFECT_KINDS: tuple[str, ...] = ("font", "colour", "reprint", "logo", "misspelling", "hologram", "layout")
SPLITS: tuple[str, ...] = ("train", "val", "test")
UNSEEN_SPLIT = "test-unseen"
LABELS: tuple[str, ...] = ("genuine", "counterfeit")
ARTWORK_SIZE: tuple[int, int] = (420, 300)
JPEG_QUALITY_RANGE: tuple[int, int] = (75, 95)  # inclusive; drawn the same way for both classes

# Tags that keep the random streams for products, plans, photos and defects independent,
# so e.g. changing split sizes never changes what a product looks like.
_PRODUCT_STREAM, _PLAN_STREAM, _PHOTO_STREAM, _DEFECT_STREAM = 11, 12, 13, 14
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2, UNSEEN_SPLIT: 3}
_SUPERSAMPLE = 2  # artwork is drawn at 2x and reduced, which anti-aliases shapes
_WORKERS = 2  # the target machines have 2 cores; more processes would only contend
_PARALLEL_MIN_JOBS = 64  # below this, starting worker processes costs more than it saves

# Bold display faces for brand names, plain faces for small print. All are bundled with
# matplotlib; the Computer Modern ones map ASCII letters normally, so brand names
# (letters only) are safe in them.
_BRAND_FONTS = (
    "DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneralBol.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif-BoldItalic.ttf", "cmb10.ttf", "cmss10.ttf",
)
_TEXT_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf")

RGB = tuple[int, int, int]
Point = tuple[float, float]


# --------------------------------------------------------------------------- design data


@dataclass(frozen=True)
class TextItem:
    text: str
    font: str  # file name inside matplotlib's ttf folder
    size: int  # font size in artwork pixels
    xy: Point
    anchor: str  # Pillow text anchor, e.g. "lm" = left-middle
    colour: RGB


@dataclass(frozen=True)
class Shape:
    kind: str  # "circle", "ring", "polygon" or "star"
    centre: Point
    radius: float
    colour: RGB
    sides: int = 0
    rotation: float = 0.0  # degrees
    stretch: Point = (1.0, 1.0)


@dataclass(frozen=True)
class Band:
    y: float
    height: float
    slant: float  # vertical drop from left to right edge, so bands can be diagonal
    colour: RGB


@dataclass(frozen=True)
class Hologram:
    xy: tuple[int, int]
    size: int
    style: str = "iridescent"  # counterfeits may have "flat" or "missing"


@dataclass(frozen=True)
class ProductDesign:
    """Everything printed on the front of one product's package (hashable, immutable)."""

    name: str
    base_colour: RGB
    decor: tuple[Shape, ...]
    bands: tuple[Band, ...]
    border: RGB | None
    logo: tuple[Shape, ...]
    brand: TextItem
    line: TextItem
    fine_print: tuple[TextItem, ...]
    barcode_bits: tuple[int, ...]
    barcode_box: tuple[int, int, int, int]
    barcode_digits: TextItem
    hologram: Hologram


# --------------------------------------------------------------------------- colours and fonts


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _luminance(rgb: RGB) -> float:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255.0


def _contrasting_text(background: RGB) -> RGB:
    return (248, 246, 240) if _luminance(background) < 0.55 else (28, 28, 36)


@functools.lru_cache(maxsize=1)
def _font_dir() -> Path:
    # matplotlib is used only to find its bundled TTF files (nothing is plotted): they are
    # the same files everywhere, which keeps the images identical across machines.
    try:
        import matplotlib
    except ImportError as error:
        raise ModuleNotFoundError("the synthetic dataset needs matplotlib's bundled fonts: "
                                  "pip install matplotlib (part of the [train] extra)", name="matplotlib") from error
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=512)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_dir() / name), size)


def _fit_font_size(text: str, font: str, max_width: float, max_size: int) -> int:
    """Largest size <= max_size at which text fits max_width (text length scales linearly)."""
    width_at_100 = _font(font, 100).getlength(text)
    return max(8, min(max_size, int(100 * max_width / width_at_100)))


# --------------------------------------------------------------------------- product designs


def product_name(product_index: int) -> str:
    """product-a, product-b, ..., product-z, product-aa, ... (bijective base 26)."""
    letters, n = "", product_index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"product-{letters}"


def _brand_name(rng: np.random.Generator) -> str:
    consonants, vowels = "BCDFGKLMNPRSTVZ", "AEIOU"
    syllables = [rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(rng.integers(2, 4))]
    name = "".join(syllables) + (rng.choice(list("NRSXL")) if rng.random() < 0.7 else "")
    return name if rng.random() < 0.6 else name.capitalize()


def _line_name(rng: np.random.Generator) -> str:
    first = ("Pure", "Ultra", "Classic", "Fresh", "Active", "Gold", "Natural", "Premium", "Daily", "Intense")
    second = ("Care", "Blend", "Shine", "Guard", "Boost", "Repair", "Balance", "Glow", "Defense", "Comfort")
    amount = ("250 ml", "100 g", "50 ml", "400 ml", "75 g", "30 caps")
    return f"{rng.choice(first)} {rng.choice(second)}  {rng.choice(amount)}"


def _fine_print_lines(rng: np.random.Generator, n_lines: int) -> list[str]:
    words = ("aqua", "glycerin", "sodium", "extract", "citric", "acid", "parfum", "limonene", "tocopherol",
             "store", "below", "25C", "keep", "dry", "avoid", "eyes", "use", "before", "see", "base")
    lines = [" ".join(rng.choice(words, size=rng.integers(4, 7))).capitalize() for _ in range(n_lines - 1)]
    lines.append(f"Lot {rng.integers(1000, 9999)}  EXP {rng.integers(2026, 2031)}-{rng.integers(1, 13):02d}")
    return lines


def _palette(rng: np.random.Generator) -> dict[str, RGB]:
    hue = rng.random()
    base = _hsv(hue, rng.uniform(0.25, 0.85), rng.uniform(0.35, 0.95))
    # Bands are complementary or analogous to the base so packages look designed.
    band_hue = hue + (rng.uniform(0.4, 0.6) if rng.random() < 0.5 else rng.choice([-1, 1]) * rng.uniform(0.08, 0.17))
    return {
        "base": base,
        "band": _hsv(band_hue, rng.uniform(0.55, 0.9), rng.uniform(0.45, 0.9)),
        "accent": _hsv(band_hue + rng.uniform(0.25, 0.45), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.95)),
        "text": _contrasting_text(base),
    }


def _logo(rng: np.random.Generator, centre: Point, radius: float, colours: dict[str, RGB]) -> tuple[Shape, ...]:
    """An outer shape, an inner star/polygon in another colour and sometimes an accent dot."""
    outer_kind = rng.choice(["circle", "ring", "polygon"])
    outer = Shape(str(outer_kind), centre, radius, colours["band"], sides=int(rng.integers(5, 9)),
                  rotation=float(rng.uniform(0, 360)))
    inner_colour = colours["accent"] if outer_kind != "ring" else colours["text"]
    inner = Shape(str(rng.choice(["star", "polygon"])), centre, radius * rng.uniform(0.5, 0.62), inner_colour,
                  sides=int(rng.integers(3, 8)), rotation=float(rng.uniform(0, 360)))
    shapes = [outer, inner]
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        dot_centre = (centre[0] + 0.78 * radius * math.cos(angle), centre[1] + 0.78 * radius * math.sin(angle))
        shapes.append(Shape("circle", dot_centre, radius * 0.16, colours["text"]))
    return tuple(shapes)


def _barcode_bits(rng: np.random.Generator) -> tuple[int, ...]:
    """EAN-13-like module pattern: guards around two random halves."""
    left, right = rng.integers(0, 2, 42).tolist(), rng.integers(0, 2, 42).tolist()
    return tuple([1, 0, 1] + left + [0, 1, 0, 1, 0] + right + [1, 0, 1])


_ROW_TOP = ARTWORK_SIZE[1] - 76  # fine print, barcode (and maybe the sticker) share the bottom row


def _bottom_row(rng, colours, text_font: str, holo_in_row: bool):
    """Fine print (left), optional hologram slot, barcode (right) along the bottom edge."""
    width, top = ARTWORK_SIZE[0], _ROW_TOP
    bar_box = (width - 116, int(top), width - 22, int(top) + 46)
    holo_size = int(rng.integers(40, 50))
    holo = Hologram((bar_box[0] - holo_size - 12, int(top) + 2), holo_size) if holo_in_row else None
    fine_right = (holo.xy[0] if holo else bar_box[0]) - 10
    fine_size = int(rng.integers(9, 11))
    lines = _fine_print_lines(rng, 4)
    fine = tuple(
        TextItem(text, text_font, _fit_font_size(text, text_font, fine_right - 20, fine_size),
                 (20.0, top + 4 + i * (fine_size + 4)), "lm", colours["text"])
        for i, text in enumerate(lines)
    )
    digits_text = "".join(str(d) for d in rng.integers(0, 10, 13))
    digits = TextItem(digits_text, "DejaVuSansMono.ttf", 9, ((bar_box[0] + bar_box[2]) / 2, bar_box[3] + 7),
                      "mm", (20, 20, 20))
    return fine, bar_box, digits, holo, holo_size


def make_product_design(seed: int, product_index: int) -> ProductDesign:
    """The genuine artwork of one product; depends only on (seed, product_index)."""
    rng = np.random.default_rng([seed, _PRODUCT_STREAM, product_index])
    colours = _palette(rng)
    brand_font, text_font = str(rng.choice(_BRAND_FONTS)), str(rng.choice(_TEXT_FONTS))
    top_band = Band(0.0, float(rng.uniform(20, 36)), 0.0, colours["band"])
    stripe = Band(_ROW_TOP - float(rng.uniform(20, 26)), float(rng.uniform(7, 13)), float(rng.uniform(-12, 12)),
                  colours["accent"])
    layout = _layout_logo_left if rng.random() < 0.5 else _layout_centred
    parts = layout(rng, colours, top_band.height, stripe.y, brand_font, text_font)
    border = colours["band"] if rng.random() < 0.5 else None
    return ProductDesign(name=product_name(product_index), base_colour=colours["base"], decor=_decor(rng, colours),
                         bands=(top_band, stripe), border=border, barcode_bits=_barcode_bits(rng), **parts)


def _decor(rng: np.random.Generator, colours: dict[str, RGB]) -> tuple[Shape, ...]:
    """A large, faint tint disc partly off the edge: the kind of background flourish packages have."""
    if rng.random() < 0.3:
        return ()
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in colours["base"]))
    tint = _hsv(h, s, v * rng.uniform(0.88, 0.94) if v > 0.5 else v * rng.uniform(1.08, 1.15))
    width, height = ARTWORK_SIZE
    centre = (float(rng.choice([0.0, width])) + rng.uniform(-60, 60), rng.uniform(0.3, 1.0) * height)
    return (Shape("circle", centre, float(rng.uniform(110, 190)), tint),)


def _line_colour(colours: dict[str, RGB]) -> RGB:
    # The product line is printed in the band colour when that is readable on the base.
    readable = abs(_luminance(colours["band"]) - _luminance(colours["base"])) > 0.3
    return colours["band"] if readable else colours["text"]


def _layout_logo_left(rng, colours, band_height: float, stripe_y: float, brand_font: str, text_font: str) -> dict:
    """Logo on the left, brand and product line beside it, centred between top band and stripe."""
    width, _ = ARTWORK_SIZE
    radius = float(rng.uniform(36, min(50.0, (stripe_y - band_height) / 2 - 8)))
    centre = (26 + radius, (band_height + stripe_y) / 2)
    brand_x = 2 * radius + 46
    brand_text = _brand_name(rng)
    brand_size = _fit_font_size(brand_text, brand_font, width - brand_x - 22, 54)
    brand = TextItem(brand_text, brand_font, brand_size, (brand_x, centre[1] - 10), "lm", colours["text"])
    line = TextItem(_line_name(rng), text_font, int(rng.integers(17, 21)), (brand_x, centre[1] + 30), "lm",
                    _line_colour(colours))
    fine, bar_box, digits, holo, _ = _bottom_row(rng, colours, text_font, holo_in_row=True)
    return {"logo": _logo(rng, centre, radius, colours), "brand": brand, "line": line, "fine_print": fine,
            "barcode_box": bar_box, "barcode_digits": digits, "hologram": holo}


def _layout_centred(rng, colours, band_height: float, stripe_y: float, brand_font: str, text_font: str) -> dict:
    """Logo, brand and product line stacked in the middle; sticker in a top corner."""
    width, _ = ARTWORK_SIZE
    radius = float(rng.uniform(26, 33))
    spare = (stripe_y - band_height) - (2 * radius + 112)  # the stack is about 2r + 112 px tall
    centre = (width / 2, band_height + 6 + max(0.0, spare / 2) + radius)
    brand_text = _brand_name(rng)
    brand_size = _fit_font_size(brand_text, brand_font, 300, 44)
    brand_y = centre[1] + radius + 30
    brand = TextItem(brand_text, brand_font, brand_size, (width / 2, brand_y), "mm", colours["text"])
    line = TextItem(_line_name(rng), text_font, int(rng.integers(15, 19)), (width / 2, brand_y + 36), "mm",
                    _line_colour(colours))
    fine, bar_box, digits, _, holo_size = _bottom_row(rng, colours, text_font, holo_in_row=False)
    # The sticker sits in a top corner, clear of the centred logo.
    holo_x = width - holo_size - 16 if rng.random() < 0.5 else 16
    holo = Hologram((holo_x, int(band_height) + 10), holo_size)
    return {"logo": _logo(rng, centre, radius, colours), "brand": brand, "line": line, "fine_print": fine,
            "barcode_box": bar_box, "barcode_digits": digits, "hologram": holo}


# --------------------------------------------------------------------------- artwork rendering


def _shape_points(shape: Shape, scale: float) -> list[Point]:
    n = shape.sides * 2 if shape.kind == "star" else shape.sides
    points = []
    for i in range(n):
        angle = math.radians(shape.rotation) + 2 * math.pi * i / n
        r = shape.radius * (0.45 if shape.kind == "star" and i % 2 else 1.0)
        points.append(((shape.centre[0] + r * math.cos(angle) * shape.stretch[0]) * scale,
                       (shape.centre[1] + r * math.sin(angle) * shape.stretch[1]) * scale))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, scale: float) -> None:
    cx, cy = shape.centre[0] * scale, shape.centre[1] * scale
    rx, ry = shape.radius * shape.stretch[0] * scale, shape.radius * shape.stretch[1] * scale
    if shape.kind == "circle":
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=shape.colour)
    elif shape.kind == "ring":
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), outline=shape.colour, width=max(2, round(0.2 * rx)))
    else:
        draw.polygon(_shape_points(shape, scale), fill=shape.colour)


def _draw_text(draw: ImageDraw.ImageDraw, item: TextItem, scale: float) -> None:
    font = _font(item.font, item.size * scale)
    draw.text((item.xy[0] * scale, item.xy[1] * scale), item.text, font=font, fill=item.colour, anchor=item.anchor)


def _draw_bands(draw: ImageDraw.ImageDraw, design: ProductDesign, scale: float) -> None:
    width = ARTWORK_SIZE[0] * scale
    for band in design.bands:
        y0, y1, slant = band.y * scale, (band.y + band.height) * scale, band.slant * scale
        draw.polygon([(0, y0), (width, y0 + slant), (width, y1 + slant), (0, y1)], fill=band.colour)


def _draw_barcode(draw: ImageDraw.ImageDraw, design: ProductDesign, scale: float) -> None:
    x0, y0, x1, y1 = (v * scale for v in design.barcode_box)
    draw.rectangle((x0 - 5 * scale, y0 - 4 * scale, x1 + 5 * scale, y1 + 14 * scale), fill=(250, 250, 247))
    module = (x1 - x0) / len(design.barcode_bits)
    for i, bit in enumerate(design.barcode_bits):
        if bit:
            draw.rectangle((x0 + i * module, y0, x0 + (i + 1) * module - 1, y1), fill=(15, 15, 15))
    _draw_text(draw, design.barcode_digits, scale)


@functools.lru_cache(maxsize=64)
def _render_print(design: ProductDesign) -> Image.Image:
    """Everything except the hologram, drawn at 2x and box-reduced (cached: genuine designs repeat)."""
    scale = _SUPERSAMPLE
    width, height = ARTWORK_SIZE
    image = Image.new("RGB", (width * scale, height * scale), design.base_colour)
    draw = ImageDraw.Draw(image)
    for shape in design.decor:
        _draw_shape(draw, shape, scale)
    _draw_bands(draw, design, scale)
    if design.border is not None:
        draw.rectangle((6 * scale, 6 * scale, (width - 7) * scale, (height - 7) * scale), outline=design.border,
                       width=2 * scale)
    for shape in design.logo:
        _draw_shape(draw, shape, scale)
    for item in (design.brand, design.line, *design.fine_print):
        _draw_text(draw, item, scale)
    _draw_barcode(draw, design, scale)
    return image.reduce(scale)


def _hologram_patch(size: int, phase: float) -> np.ndarray:
    """Iridescent square: rainbow hue bands plus a concentric emboss; phase mimics viewing angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    radius = np.hypot(xx - 0.5, yy - 0.5)
    hue = (0.9 * (xx + yy) + 0.15 * np.sin(radius * 40.0) + phase) % 1.0
    value = 0.82 + 0.15 * np.cos(radius * 55.0 + 6.0 * phase)
    h6 = hue * 6.0  # vectorised hue -> fully saturated RGB
    rgb = np.stack([np.abs(h6 - 3.0) - 1.0, 2.0 - np.abs(h6 - 2.0), 2.0 - np.abs(h6 - 4.0)], axis=-1).clip(0, 1)
    colour = (0.55 + 0.45 * rgb) * value[..., None]  # pastel, like foil
    colour[[0, -1], :, :] = colour[:, [0, -1], :] = 0.72  # silver rim
    return (colour * 255).astype(np.uint8)


def _flat_patch(size: int) -> np.ndarray:
    """A counterfeit's sticker: plain silver-grey with a soft sheen and no iridescence."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grey = 168 + 30 * (1.0 - np.hypot(xx - 0.3, yy - 0.3))
    return np.repeat(grey[..., None], 3, axis=2).clip(0, 255).astype(np.uint8)


def render_artwork(design: ProductDesign, hologram_phase: float = 0.0) -> Image.Image:
    """The flat front artwork (RGB, ARTWORK_SIZE). hologram_phase in [0, 1) shifts the sticker's rainbow."""
    image = _render_print(design).copy()
    sticker = design.hologram
    if sticker.style == "missing":
        return image
    if sticker.style == "iridescent":
        patch = _hologram_patch(sticker.size, hologram_phase)
    else:
        patch = _flat_patch(sticker.size)
    image.paste(Image.fromarray(patch), sticker.xy)
    return image


# --------------------------------------------------------------------------- counterfeit defects


def _other(options: Sequence[str], current: str, rng: np.random.Generator) -> str:
    return str(rng.choice([option for option in options if option != current]))


def _defect_font(design: ProductDesign, rng: np.random.Generator) -> ProductDesign:
    """Brand name set in another typeface, scaled to the same printed width and position."""
    brand = design.brand
    new_font = _other(_BRAND_FONTS, brand.font, rng)
    width = _font(brand.font, brand.size).getlength(brand.text)
    size = _fit_font_size(brand.text, new_font, width, round(brand.size * 1.3))
    changed = replace(design, brand=replace(brand, font=new_font, size=size))
    if rng.random() < 0.5:  # counterfeiters often lack the small-print typeface too
        text_font = _other(_TEXT_FONTS, design.line.font, rng)
        changed = replace(changed, line=replace(design.line, font=text_font),
                          fine_print=tuple(replace(item, font=text_font) for item in design.fine_print))
    return changed


def _shifted_colour(rgb: RGB, rng: np.random.Generator) -> RGB:
    """Hue turned 15-25 degrees, or lightness changed by 10-18% of full scale."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    turned = _hsv(h + rng.choice([-1, 1]) * rng.uniform(15, 25) / 360.0, s, v)
    # A hue turn barely moves dull colours, so those inks get printed lighter or darker instead.
    if rng.random() < 0.7 and max(abs(a - b) for a, b in zip(turned, rgb)) >= 24:
        return turned
    change = rng.uniform(0.10, 0.18) * rng.choice([-1, 1])
    if not 0.05 <= v + change <= 1.0:
        change = -change
    return _hsv(h, s, v + change)


def _recolour(design: ProductDesign, old: RGB, new: RGB) -> ProductDesign:
    """Swap one ink everywhere it is printed (base, bands, border, logo, product line)."""
    pick = lambda colour: new if colour == old else colour  # noqa: E731
    return replace(
        design, base_colour=pick(design.base_colour),
        bands=tuple(replace(band, colour=pick(band.colour)) for band in design.bands),
        border=None if design.border is None else pick(design.border),
        logo=tuple(replace(shape, colour=pick(shape.colour)) for shape in design.logo),
        line=replace(design.line, colour=pick(design.line.colour)),
    )


def _defect_colour(design: ProductDesign, rng: np.random.Generator) -> ProductDesign:
    inks = [design.base_colour] + [band.colour for band in design.bands]
    old = inks[int(rng.integers(len(inks)))]
    return _recolour(design, old, _shifted_colour(old, rng))


def _reprint(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Scanned-and-reprinted look: detail lost by downscaling 2.5-4x, sometimes misregistered inks."""
    factor = rng.uniform(2.5, 4.0)
    small = image.resize((round(image.width / factor), round(image.height / factor)), Image.BILINEAR)
    resample = Image.BICUBIC if rng.random() < 0.6 else Image.NEAREST
    blurry = small.resize(image.size, resample)
    if rng.random() < 0.5:  # one ink plate printed slightly off register bleeds colour at edges
        pixels = np.asarray(blurry).copy()
        channel = int(rng.integers(3))
        pixels[..., channel] = np.roll(pixels[..., channel], (int(rng.integers(1, 3)), int(rng.integers(1, 3))), (0, 1))
        blurry = Image.fromarray(pixels)
    return blurry


def _defect_logo(design: ProductDesign, rng: np.random.Generator) -> ProductDesign:
    shapes = list(design.logo)
    outer, inner = shapes[0], shapes[1]
    change = str(rng.choice(["sides", "remove", "swap", "stretch", "resize"]))
    if change == "sides":
        # Polygons with many sides look alike, so a polygon changes by at least two sides.
        min_step = 1 if inner.kind == "star" else 2
        choices = [n for n in range(3, 9) if abs(n - inner.sides) >= min_step]
        shapes[1] = replace(inner, sides=int(rng.choice(choices)))
    elif change == "remove":  # the central emblem is missing
        del shapes[1]
    elif change == "swap" and outer.colour != inner.colour:
        shapes[0], shapes[1] = replace(outer, colour=inner.colour), replace(inner, colour=outer.colour)
    elif change in ("stretch", "swap"):
        shapes = _stretched_logo(shapes, rng)
    else:  # the inner emblem printed at the wrong proportion
        factor = rng.uniform(1.3, 1.45) if rng.random() < 0.5 else rng.uniform(0.6, 0.72)
        shapes[1] = replace(inner, radius=inner.radius * factor)
    return replace(design, logo=tuple(shapes))


def _stretched_logo(shapes: list[Shape], rng: np.random.Generator) -> list[Shape]:
    factor = rng.uniform(1.25, 1.4)
    stretch = (factor, 1.0) if rng.random() < 0.5 else (1.0, factor)
    cx, cy = shapes[0].centre
    return [replace(shape, stretch=stretch, centre=(cx + (shape.centre[0] - cx) * stretch[0],
                                                    cy + (shape.centre[1] - cy) * stretch[1])) for shape in shapes]


# Look-alike pairs that differ by a whole stroke (O/Q or C/G would only differ by a tiny tail).
_LOOKALIKE_LETTERS = dict(zip("EFILNMUVRPBDSZKX", "FELINMVUPRDBZSXK"))


def _misspell(text: str, rng: np.random.Generator) -> str:
    """Swap, replace with a look-alike, double or drop one letter; always returns a different word."""
    for _ in range(20):
        i = int(rng.integers(1, len(text) - 1))  # keep the first letter: fakes rarely change that
        change = str(rng.choice(["swap", "lookalike", "double", "drop"]))
        if change == "swap":
            candidate = text[:i] + text[i + 1] + text[i] + text[i + 2:]
        elif change == "lookalike" and text[i].upper() in _LOOKALIKE_LETTERS and text[i] not in "il":
            letter = _LOOKALIKE_LETTERS[text[i].upper()]  # lower-case i/l differ only by a dot
            candidate = text[:i] + (letter if text[i].isupper() else letter.lower()) + text[i + 1:]
        elif change == "double":
            candidate = text[:i] + text[i] + text[i:]
        else:
            candidate = text[:i] + text[i + 1:]
        if candidate != text:
            return candidate
    return text[:-1] + text[-1] * 2


def _text_extent(item: TextItem) -> tuple[float, float, float, float]:
    left, top, right, bottom = _font(item.font, item.size).getbbox(item.text, anchor=item.anchor)
    return item.xy[0] + left, item.xy[1] + top, item.xy[0] + right, item.xy[1] + bottom


def _logo_extent(shapes: Sequence[Shape]) -> tuple[float, float, float, float]:
    xs = [x for s in shapes for x in (s.centre[0] - s.radius * s.stretch[0], s.centre[0] + s.radius * s.stretch[0])]
    ys = [y for s in shapes for y in (s.centre[1] - s.radius * s.stretch[1], s.centre[1] + s.radius * s.stretch[1])]
    return min(xs), min(ys), max(xs), max(ys)


def _shift_on_package(extent: tuple[float, float, float, float], rng: np.random.Generator) -> Point:
    """A shift by 6-15% of the width (sideways) or height (up/down) that keeps the element on the package."""
    width, height = ARTWORK_SIZE
    x0, y0, x1, y1 = extent
    moves = [(sign * rng.uniform(0.06, 0.15) * width, 0.0) for sign in (-1, 1)]
    moves += [(0.0, sign * rng.uniform(0.06, 0.15) * height) for sign in (-1, 1)]
    for i in rng.permutation(len(moves)):
        dx, dy = moves[i]
        if x0 + dx >= 4 and x1 + dx <= width - 4 and y0 + dy >= 4 and y1 + dy <= height - 4:
            return float(dx), float(dy)
    return float(moves[int(rng.integers(len(moves)))][0]), 0.0  # nothing fits: a misprint off the edge


def _defect_layout(design: ProductDesign, rng: np.random.Generator) -> ProductDesign:
    """Brand or logo moved by 6-15% of the artwork size, a band moved vertically, or the brand rescaled."""
    height = ARTWORK_SIZE[1]
    target = str(rng.choice(["brand", "logo", "band", "scale"]))
    if target == "brand":
        brand = design.brand
        dx, dy = _shift_on_package(_text_extent(brand), rng)
        return replace(design, brand=replace(brand, xy=(brand.xy[0] + dx, brand.xy[1] + dy)))
    if target == "logo":
        dx, dy = _shift_on_package(_logo_extent(design.logo), rng)
        return replace(design, logo=tuple(replace(s, centre=(s.centre[0] + dx, s.centre[1] + dy)) for s in design.logo))
    if target == "band":
        index = int(rng.integers(len(design.bands)))
        bands = list(design.bands)
        bands[index] = replace(bands[index], y=bands[index].y + rng.choice([-1, 1]) * rng.uniform(0.06, 0.12) * height)
        return replace(design, bands=tuple(bands))
    factor = rng.uniform(0.78, 0.88) if rng.random() < 0.5 else rng.uniform(1.12, 1.22)
    return replace(design, brand=replace(design.brand, size=max(8, round(design.brand.size * factor))))


def counterfeit_design(design: ProductDesign, kind: str, rng: np.random.Generator) -> ProductDesign:
    """The design with one defect applied; 'reprint' changes the print process, not the design."""
    if kind == "font":
        return _defect_font(design, rng)
    if kind == "colour":
        return _defect_colour(design, rng)
    if kind == "logo":
        return _defect_logo(design, rng)
    if kind == "misspelling":
        return replace(design, brand=replace(design.brand, text=_misspell(design.brand.text, rng)))
    if kind == "hologram":
        return replace(design, hologram=replace(design.hologram, style=str(rng.choice(["flat", "missing"]))))
    if kind == "layout":
        return _defect_layout(design, rng)
    if kind == "reprint":
        return design
    raise ValueError(f"unknown defect kind {kind!r}: choose from {', '.join(DEFECT_KINDS)}")


def counterfeit_artwork(design: ProductDesign, kind: str, rng: np.random.Generator,
                        hologram_phase: float = 0.0) -> Image.Image:
    """Flat counterfeit artwork: the genuine one with exactly one defect of the given kind."""
    artwork = render_artwork(counterfeit_design(design, kind, rng), hologram_phase)
    return _reprint(artwork, rng) if kind == "reprint" else artwork


# --------------------------------------------------------------------------- photo: background


def _pixel_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates as a (1, W) row and an (H, 1) column: broadcasting is cheaper than full grids."""
    width, height = size
    return np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None]


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in about [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.random((cells[1], cells[0])).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))


def _surface_colour(rng: np.random.Generator) -> np.ndarray:
    return np.array(_hsv(rng.random(), rng.uniform(0.05, 0.55), rng.uniform(0.25, 0.95)), np.float32)


def _gradient_background(rng, size, xx, yy) -> np.ndarray:
    angle = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    start, end = _surface_colour(rng), _surface_colour(rng)
    return start + (end - start) * t[..., None]


def _wood_background(rng, size, xx, yy) -> np.ndarray:
    """Planks with wavy grain and dark seams, at a random angle, like a table top."""
    angle = rng.uniform(0, math.pi)
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    plank_width = rng.uniform(60, 150)
    plank = np.floor(across / plank_width)
    warp = _smooth_noise(rng, size, (6, 5)) * rng.uniform(8, 25)
    grain = np.sin((across + warp) * rng.uniform(0.25, 0.6) + plank * 3.7)
    plank_tone = rng.uniform(-0.08, 0.08, 64).astype(np.float32)[(plank.astype(int) % 64)]
    shade = 1.0 + 0.07 * grain + plank_tone
    shade[(across % plank_width) < rng.uniform(1.5, 3.5)] *= 0.55
    colour = np.array(_hsv(rng.uniform(0.04, 0.11), rng.uniform(0.3, 0.65), rng.uniform(0.35, 0.85)), np.float32)
    return colour * shade[..., None]


def _tiled_background(rng, size, xx, yy) -> np.ndarray:
    tile, grout = rng.uniform(40, 130), rng.uniform(1.5, 5)
    checker = ((np.floor(xx / tile) + np.floor(yy / tile)) % 2)[..., None]
    first = _surface_colour(rng)
    second = first * rng.uniform(0.75, 1.1) if rng.random() < 0.6 else _surface_colour(rng)
    lines = (((xx % tile) < grout) | ((yy % tile) < grout))[..., None]
    return np.where(lines, _surface_colour(rng), first + (second - first) * checker)


def _mottled_background(rng, size, xx, yy) -> np.ndarray:
    """Stone, concrete or paper: two colours mixed by noise at two scales."""
    mix = 0.7 * _smooth_noise(rng, size, (5, 4)) + 0.3 * _smooth_noise(rng, size, (22, 17))
    start = _surface_colour(rng)
    end = start * rng.uniform(0.6, 1.3) if rng.random() < 0.7 else _surface_colour(rng)
    return start + (end - start) * mix[..., None]


def _cloth_background(rng, size, xx, yy) -> np.ndarray:
    period = rng.uniform(3, 7)
    weave = np.sin(xx * 2 * math.pi / period) * np.sin(yy * 2 * math.pi / period)
    folds = _smooth_noise(rng, size, (4, 3))
    shade = 0.85 + 0.06 * weave + 0.25 * folds
    return _surface_colour(rng) * shade[..., None]


_BACKGROUNDS = (_gradient_background, _wood_background, _tiled_background, _mottled_background, _cloth_background)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    xx, yy = _pixel_grid(size)
    image = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))](rng, size, xx, yy)
    return np.broadcast_to(np.clip(image, 0, 255), (size[1], size[0], 3)).astype(np.float32)


# --------------------------------------------------------------------------- photo: box geometry


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    around_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    around_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return around_x @ around_y


def _box_faces(width: float, height: float, depth: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Corners (in texture order TL, TR, BR, BL) and outward normal of each face; front at z=0."""
    x0, x1, y0, y1, d = -width / 2, width / 2, -height / 2, height / 2, depth
    faces = {
        "front": ([(x0, y0, 0), (x1, y0, 0), (x1, y1, 0), (x0, y1, 0)], (0, 0, -1)),
        "right": ([(x1, y0, 0), (x1, y0, d), (x1, y1, d), (x1, y1, 0)], (1, 0, 0)),
        "left": ([(x0, y0, d), (x0, y0, 0), (x0, y1, 0), (x0, y1, d)], (-1, 0, 0)),
        "top": ([(x0, y0, d), (x1, y0, d), (x1, y0, 0), (x0, y0, 0)], (0, -1, 0)),
        "bottom": ([(x0, y1, 0), (x1, y1, 0), (x1, y1, d), (x0, y1, d)], (0, 1, 0)),
    }
    return {name: (np.array(corners, float), np.array(normal, float)) for name, (corners, normal) in faces.items()}


def _project_box(rng: np.random.Generator, depth: float) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Visible faces of the package as 2D quads (before placement) and their Lambert shading."""
    width, height = ARTWORK_SIZE
    rotation = _rotation(math.radians(rng.uniform(-32, 32)), math.radians(rng.uniform(-25, 25)))
    distance = width * rng.uniform(2.5, 6.0)  # nearer camera = stronger perspective
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8), -1.0])
    light /= np.linalg.norm(light)
    roll = math.radians(rng.uniform(-20, 20))
    in_plane = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    quads, shades = {}, {}
    for name, (corners, normal) in _box_faces(width, height, depth).items():
        camera = (corners - [0, 0, depth / 2]) @ rotation.T + [0, 0, distance]
        turned = rotation @ normal
        if name != "front" and turned @ camera.mean(axis=0) >= -1e-6:
            continue  # faces pointing away from the camera are hidden
        quads[name] = (distance * camera[:, :2] / camera[:, 2:3]) @ in_plane.T
        shades[name] = float(np.clip(0.38 + 0.68 * max(0.0, turned @ light), 0.35, 1.08))
    return quads, shades


def _place_quads(rng: np.random.Generator, quads: dict[str, np.ndarray], frame: tuple[int, int]) -> dict:
    """Scale so the package is 55-85% of the frame height (or fits the width) and put it anywhere inside."""
    points = np.concatenate(list(quads.values()))
    low, span = points.min(axis=0), np.ptp(points, axis=0)
    scale = rng.uniform(0.55, 0.85) * frame[1] / span[1]
    scale = min(scale, 0.94 * frame[0] / span[0])
    room = np.array(frame) - span * scale
    offset = np.array([rng.uniform(0.01, 0.99), rng.uniform(0.01, 0.99)]) * room - low * scale
    return {name: quad * scale + offset for name, quad in quads.items()}


def _perspective_coefficients(target: np.ndarray, source: np.ndarray) -> tuple[float, ...]:
    """Pillow PERSPECTIVE coefficients mapping output (target) points back to input (source) points."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -x * u, -y * u])
        rows.append([0, 0, 0, x, y, 1, -x * v, -y * v])
        rhs.extend([u, v])
    return tuple(np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist())


def _face_textures(artwork: Image.Image, depth: int) -> dict[str, Image.Image]:
    """Side faces continue the front's edge colours (bands wrap around the box)."""
    width, height = artwork.size
    return {
        "front": artwork,
        "right": artwork.crop((width - 2, 0, width - 1, height)).resize((depth, height)),
        "left": artwork.crop((1, 0, 2, height)).resize((depth, height)),
        "top": artwork.crop((0, 1, width, 2)).resize((width, depth)),
        "bottom": artwork.crop((0, height - 2, width, height - 1)).resize((width, depth)),
    }


def _warp_face(texture: Image.Image, quad: np.ndarray, shade: float) -> tuple[Image.Image, tuple[int, int]]:
    """The texture shaded and mapped onto quad; returns an RGBA tile and where to paste it."""
    edges = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    shrink = max(edges[0], edges[2]) / texture.width
    if shrink < 0.8:  # pre-shrink so the perspective warp does not alias fine print
        texture = texture.resize((max(2, round(texture.width * shrink)), max(2, round(texture.height * shrink))),
                                 Image.Resampling.LANCZOS)
    shaded = np.asarray(texture, np.float32) * shade
    pad = 2  # transparent margin so bicubic sampling gives soft, anti-aliased box edges
    tile = np.zeros((texture.height + 2 * pad, texture.width + 2 * pad, 4), np.uint8)
    tile[pad:-pad, pad:-pad, :3] = np.clip(shaded, 0, 255)
    tile[pad:-pad, pad:-pad, 3] = 255
    w, h = texture.size
    source = np.array([(pad, pad), (pad + w, pad), (pad + w, pad + h), (pad, pad + h)], float)
    x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 1
    coefficients = _perspective_coefficients(quad - [x0, y0], source)
    warped = Image.fromarray(tile).transform((int(x1 - x0), int(y1 - y0)), Image.Transform.PERSPECTIVE,
                                             coefficients, Image.Resampling.BICUBIC)
    return warped, (int(x0), int(y0))


# --------------------------------------------------------------------------- photo: light and camera


def _composite(frame: Image.Image, tile: Image.Image, xy: tuple[int, int]) -> None:
    """alpha_composite that tolerates tiles hanging over the frame edge."""
    x, y = xy
    left, top = max(0, -x), max(0, -y)
    right, bottom = min(tile.width, frame.width - x), min(tile.height, frame.height - y)
    if right > left and bottom > top:
        frame.alpha_composite(tile.crop((left, top, right, bottom)), (x + left, y + top))


def _shadow(rng: np.random.Generator, quads: dict[str, np.ndarray], frame: tuple[int, int]) -> np.ndarray:
    """Soft cast shadow of the package: a blurred, offset silhouette drawn at quarter resolution."""
    factor = 4
    mask = Image.new("L", (frame[0] // factor, frame[1] // factor), 0)
    draw = ImageDraw.Draw(mask)
    offset = np.array([rng.uniform(-25, 25), rng.uniform(0, 30)])
    for quad in quads.values():
        draw.polygon([tuple(p) for p in (quad + offset) / factor], fill=255)
    blurred = mask.filter(ImageFilter.GaussianBlur(rng.uniform(5, 20) / factor))
    blurred = blurred.resize(frame, Image.Resampling.BILINEAR)
    return np.asarray(blurred, np.float32) / 255.0 * rng.uniform(0.25, 0.6)


def _lighting(rng: np.random.Generator, frame: tuple[int, int]) -> np.ndarray:
    """Multiplicative (H, W, 1) light field: a directional gradient times a vignette.
    It is smooth, so it is computed on a coarse grid and upsampled."""
    xx, yy = _pixel_grid((64, 48))
    u, v = xx / 64 - 0.5, yy / 48 - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0, 0.4) * (u * math.cos(angle) + v * math.sin(angle))
    vignette = 1.0 - rng.uniform(0, 0.45) * (u * u + v * v) * 2.0
    field = Image.fromarray((gradient * vignette).astype(np.float32)).resize(frame, Image.Resampling.BILINEAR)
    return np.asarray(field)[..., None]


def _camera_response(rng: np.random.Generator, image: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Scene lighting, then white balance, exposure and contrast of a cheap phone camera, in one pass."""
    gains = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    contrast, brightness = rng.uniform(0.8, 1.15), rng.uniform(-20, 20)
    # (image * light * gains - 128) * contrast + 128 + brightness, folded into one multiply-add
    return image * (light * (gains * contrast)) + np.float32(128.0 * (1.0 - contrast) + brightness)


def _sensor(rng: np.random.Generator, image: np.ndarray) -> Image.Image:
    """Optional defocus blur, then sensor noise, as 8-bit RGB."""
    if rng.random() < 0.35:
        blurred = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
        image = np.asarray(blurred, np.float32)
    # Luminance noise only: chroma noise would be mostly removed by JPEG's colour subsampling anyway.
    image = image + rng.standard_normal((*image.shape[:2], 1), dtype=np.float32) * np.float32(rng.uniform(1.5, 5.0))
    return Image.fromarray(np.clip(image, 0, 255, out=image).astype(np.uint8))


def photograph(artwork: Image.Image, rng: np.random.Generator, frame: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo (RGB, size frame) of a box whose front face is the artwork. Same for both classes."""
    background = _background(rng, frame)
    depth = int(rng.uniform(0.12, 0.3) * ARTWORK_SIZE[1])
    quads, shades = _project_box(rng, depth)
    quads = _place_quads(rng, quads, frame)
    background *= (1.0 - _shadow(rng, quads, frame))[..., None]
    picture = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).convert("RGBA")
    textures = _face_textures(artwork, depth)
    for name, quad in quads.items():
        tile, xy = _warp_face(textures[name], quad, shades[name])
        _composite(picture, tile, xy)
    scene = np.asarray(picture.convert("RGB"), np.float32)
    return _sensor(rng, _camera_response(rng, scene, _lighting(rng, frame)))


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """Baseline JPEG without EXIF or other metadata, so files reveal nothing but pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality), optimize=False, progressive=False)
    return buffer.getvalue()


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class ImageJob:
    """One image to generate: where it goes and what it shows."""

    split: str
    index: int
    label: str
    product_index: int
    defect: str  # "" for genuine

    @property
    def relative_path(self) -> str:
        return f"{self.split}/{self.label}/{product_name(self.product_index)}/{self.split}-{self.index:05d}.jpg"


def plan_split(seed: int, split: str, size: int, products: int, kinds: Sequence[str]) -> list[ImageJob]:
    """Balanced classes (genuine gets the odd one), products cycled evenly within each class,
    defect kinds used equally often, and a shuffled file order so indices reveal nothing."""
    rng = np.random.default_rng([seed, _PLAN_STREAM, _SPLIT_IDS[split]])
    n_genuine, n_fake = size - size // 2, size // 2
    entries = [("genuine", i % products, "") for i in range(n_genuine)]
    # Shuffle the kinds before tiling, so small splits do not always get the first kinds.
    defects = rng.permutation(np.resize(rng.permutation(np.array(kinds)), n_fake))
    entries += [("counterfeit", i % products, str(defects[i])) for i in range(n_fake)]
    order = rng.permutation(size)
    return sorted((ImageJob(split, int(order[k]), *entries[k]) for k in range(size)), key=lambda job: job.index)


def make_image(seed: int, job: ImageJob, design: ProductDesign, frame: tuple[int, int]) -> tuple[bytes, int]:
    """JPEG bytes and quality of one job; depends only on (seed, job, design, frame)."""
    split_id = _SPLIT_IDS[job.split]
    photo_rng = np.random.default_rng([seed, _PHOTO_STREAM, split_id, job.index])
    phase = float(photo_rng.random())
    if job.label == "genuine":
        artwork = render_artwork(design, phase)
    else:
        defect_rng = np.random.default_rng([seed, _DEFECT_STREAM, split_id, job.index])
        artwork = counterfeit_artwork(design, job.defect, defect_rng, phase)
    image = photograph(artwork, photo_rng, frame)
    quality = int(photo_rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    return jpeg_bytes(image, quality), quality


def _render_task(task: tuple[int, ImageJob, ProductDesign, tuple[int, int]]) -> tuple[bytes, int]:
    return make_image(*task)


@contextlib.contextmanager
def _rendered_images(seed: int, jobs: list[ImageJob], designs: list[ProductDesign], frame: tuple[int, int]):
    """Yields an iterator of (jpeg bytes, quality) in job order.

    Big runs use a small fork-based process pool; every image has its own seeded generator,
    so the bytes are the same whichever process renders them."""
    tasks = [(seed, job, designs[job.product_index], frame) for job in jobs]
    parallel = (len(tasks) >= _PARALLEL_MIN_JOBS and (os.cpu_count() or 1) > 1
                and "fork" in multiprocessing.get_all_start_methods())
    if not parallel:
        yield map(_render_task, tasks)
        return
    with multiprocessing.get_context("fork").Pool(_WORKERS) as pool:
        yield pool.imap(_render_task, tasks, chunksize=4)


def _held_out_kinds(holdout: Sequence[str] | str) -> tuple[str, ...]:
    requested = (holdout,) if isinstance(holdout, str) else tuple(holdout)
    unknown = [kind for kind in requested if kind not in DEFECT_KINDS]
    if unknown:
        raise ValueError(f"unknown defect kind(s) {', '.join(map(repr, unknown))} in holdout: "
                         f"choose from {', '.join(DEFECT_KINDS)}")
    held = tuple(kind for kind in DEFECT_KINDS if kind in requested)
    if len(held) == len(DEFECT_KINDS):
        raise ValueError("holdout cannot contain every defect kind: leave at least one for training "
                         f"(kinds: {', '.join(DEFECT_KINDS)})")
    return held


def _check_arguments(out: Path, seed: int, products: int, sizes: dict[str, int], image_size) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(products, bool) or not isinstance(products, (int, np.integer)) or products < 1:
        raise ValueError(f"products must be at least 1, got {products!r}")
    for split, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
            raise ValueError(f"n_{split} must be at least 2 (one genuine and one counterfeit), got {size!r}")
    if len(tuple(image_size)) != 2 or any(not isinstance(v, (int, np.integer)) or v < 64 for v in image_size):
        raise ValueError(f"image_size must be (width, height) with both at least 64 pixels, got {image_size!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder: choose a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty: choose a new folder")


def _plan_dataset(seed: int, products: int, sizes: dict[str, int], held: tuple[str, ...]) -> list[ImageJob]:
    seen = tuple(kind for kind in DEFECT_KINDS if kind not in held)
    jobs = [job for split in SPLITS for job in plan_split(seed, split, sizes[split], products, seen)]
    if held:  # new genuine photos plus counterfeits made only with the held-out defects
        jobs += plan_split(seed, UNSEEN_SPLIT, sizes["test"], products, held)
    return jobs


def with_progress(items: list, enabled: bool, label: str, unit: str = "img"):
    """`items` with a tqdm progress bar when enabled and tqdm is installed, else as they are."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=label, unit=unit)


def _write_manifest(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "split", "label", "product", "defect", "jpeg_quality"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _summary(out: Path, seed: int, jobs: list[ImageJob], held: tuple[str, ...]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        per_label = counts.setdefault(job.split, {label: 0 for label in LABELS})
        per_label[job.label] += 1
    return {"out": str(out), "counts": counts, "defects_train": [k for k in DEFECT_KINDS if k not in held],
            "defects_unseen": list(held), "seed": seed}


def write_dataset(out: Path, *, seed: int = 0, products: int = 3, n_train: int = 480, n_val: int = 160,
                  n_test: int = 160, holdout: Sequence[str] = (), image_size: tuple[int, int] = (640, 480),
                  progress: bool = True) -> dict:
    """Write out/{split}/{genuine,counterfeit}/{product}/{split}-{index:05d}.jpg plus out/manifest.csv.

    Held-out defect kinds never appear in train/val/test; they get their own "test-unseen"
    split (n_test images). Raises ValueError, before writing anything, for bad arguments.
    """
    out = Path(out)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    _check_arguments(out, seed, products, sizes, image_size)
    held = _held_out_kinds(holdout)
    frame = (int(image_size[0]), int(image_size[1]))
    designs = [make_product_design(seed, index) for index in range(products)]
    jobs = _plan_dataset(seed, products, sizes, held)
    # Written into a hidden sibling and renamed at the end: an interrupted run leaves no half dataset.
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_images(partial, seed, jobs, designs, frame, progress, out.name)
        write_origin(partial, photos="synthetic", counterfeits="synthetic", made_by=f"counterfeit synth --seed {seed}")
        if out.is_dir():
            out.rmdir()  # checked empty above
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return _summary(out, seed, jobs, held)


def _write_images(root: Path, seed: int, jobs, designs, frame, progress: bool, name: str) -> None:
    rows = []
    # The pool is started before the progress bar, whose monitor thread should not be forked.
    with _rendered_images(seed, jobs, designs, frame) as results:
        for job, (data, quality) in zip(with_progress(jobs, progress, f"synth {name}"), results):
            target = root / job.relative_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            rows.append({"path": job.relative_path, "split": job.split, "label": job.label,
                         "product": product_name(job.product_index), "defect": job.defect, "jpeg_quality": quality})
    _write_manifest(root / "manifest.csv", rows)
