"""Robustness under benign photo changes: does the answer hold when the same item is photographed a little
differently, or the photo is passed on through a phone's pipeline, a messenger or a marketplace?

CHANGES maps a short name to change(image, rng) -> bytes: a decoded photo (RGB, full resolution) becomes
the file a phone or marketplace would deliver (JPEG q92 unless the change is itself an encoding), the same
bytes for the same rng seed. evaluate_robustness() sends the unchanged photos and each changed copy through
the HTTP service's own path (decode, quality gate, registration, batched scoring, thresholds) and reports
per change the genuines called counterfeit and the counterfeits still caught. numpy, Pillow and OpenCV
only: no torch.
"""

from __future__ import annotations

import io
import json
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from inference.classes import CLASSES, COUNTERFEIT, GENUINE, INCONCLUSIVE, RETAKE
from inference.images import ImageError, Limits, load_image
from inference.layout import Sample
from inference.metrics import roc_auc
from inference.metrics import share as true_share
from inference.pipeline import decode_and_prepare  # the service's own decode -> quality gate -> registration
from inference.predictor import Predictor, Prepared, stacked
from inference.quality import QualityThresholds

Change = Callable[[Image.Image, np.random.Generator], bytes]

DELIVERED_QUALITY = 92  # JPEG quality of a phone's camera app or a marketplace's re-encode
UNCHANGED = "unchanged"
ERROR = "error"  # an Outcome's verdict when the photo could not be read or decoded
GOAL_GENUINE_AS_COUNTERFEIT = 0.01  # at most this share of all genuines may be answered counterfeit
GOAL_CAUGHT_DROP = 5.0  # percentage points the counterfeits caught may fall below the unchanged photos'
# Photos decoded at full resolution and held together while every change is applied to them: 16 12-MP
# photos are ~0.6 GB; it is also the scoring batch of each change. Smaller than the server's MAX_BATCH
# (inference.predictor), which counts photos already reduced to the model's input size.
FULL_RESOLUTION_BATCH = 16


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = DELIVERED_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=quality)
    return buffer.getvalue()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


# --- light: reflections ---------------------------------------------------------------------------------

def _highlight(shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float],
               angle: float) -> np.ndarray:
    """A reflection's strength 0..1 (h, w): blown out (1) inside 0.9 of the ellipse's semi-axes, fading with a
    Gaussian profile to < 1% beyond 2.6 of them. Computed only in the box where it is not zero."""
    height, width = shape
    alpha = np.zeros(shape, np.float32)
    reach = 2.6 * max(axes)
    x0, x1 = int(max(0, centre[0] - reach)), int(min(width, centre[0] + reach + 1))
    y0, y1 = int(max(0, centre[1] - reach)), int(min(height, centre[1] + reach + 1))
    if x0 >= x1 or y0 >= y1:
        return alpha
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / axes[0]
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / axes[1]
    # 1.5 * exp(-r^2 / 2) >= 1 for r <= 0.9: a clipped core, as a camera records a lamp's reflection
    alpha[y0:y1, x0:x1] = np.minimum(1.0, 1.5 * np.exp(-(u * u + v * v) / 2))
    return alpha


def _whiten(image: Image.Image, alpha: np.ndarray) -> bytes:
    pixels = _pixels(image)
    return encode(_image(pixels + (255 - pixels) * alpha[..., None]))


def glare(image: Image.Image, rng: np.random.Generator) -> bytes:
    # A lamp reflected on glossy print: an ellipse of semi-axes 8-20% x (0.6-0.9 of that) of the shorter
    # side, centred within +-15% of each side from the middle: its clipped core covers ~3-25% of the
    # frame's central 60% x 60%, from a glint the model must cope with to one that hides the label.
    width, height = image.size
    major = rng.uniform(0.08, 0.20) * min(width, height)
    centre = (width * (0.5 + rng.uniform(-0.15, 0.15)), height * (0.5 + rng.uniform(-0.15, 0.15)))
    axes = (major, major * rng.uniform(0.6, 0.9))
    return _whiten(image, _highlight((height, width), centre, axes, rng.uniform(0, np.pi)))


def specular(image: Image.Image, rng: np.random.Generator) -> bytes:
    # Glints on foil, a glossy lid or embossing: 3-8 small highlights of semi-axes 1-3% of the shorter
    # side, anywhere in the middle 80% of the frame.
    width, height = image.size
    alpha = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(3, 9)):
        major = rng.uniform(0.01, 0.03) * min(width, height)
        centre = (width * rng.uniform(0.1, 0.9), height * rng.uniform(0.1, 0.9))
        spot = _highlight((height, width), centre, (major, major * rng.uniform(0.4, 1.0)), rng.uniform(0, np.pi))
        alpha = np.maximum(alpha, spot)
    return _whiten(image, alpha)


# --- the phone's processing and the way the photo travels -------------------------------------------------

def sharpen(image: Image.Image, rng: np.random.Generator) -> bytes:
    # A camera app's sharpening: unsharp mask of radius 1-2 px, 60-120% strength, differences under
    # 2 levels (sensor noise) left alone.
    unsharp = ImageFilter.UnsharpMask(radius=rng.uniform(1, 2), percent=int(rng.uniform(60, 120)), threshold=2)
    return encode(image.filter(unsharp))


def denoise(image: Image.Image, rng: np.random.Generator) -> bytes:
    # A camera app's noise reduction: edge-preserving bilateral filter over 7 px, colour sigma 20-40
    # levels (flattens noise and the finest print texture), space sigma 3-6 px.
    pixels = np.ascontiguousarray(np.asarray(image))
    smoothed = cv2.bilateralFilter(pixels, 7, float(rng.uniform(20, 40)), float(rng.uniform(3, 6)))
    return encode(Image.fromarray(smoothed))


def _downscaled(factor: int) -> Change:
    def change(image: Image.Image, rng: np.random.Generator) -> bytes:
        # A messenger's or listing site's resize: each side divided by `factor`, antialiased (Lanczos);
        # the photo stays that small.
        size = (max(1, image.width // factor), max(1, image.height // factor))
        return encode(image.resize(size, Image.Resampling.LANCZOS))
    return change


def _encoded(fmt: str, quality: int) -> Change:
    def change(image: Image.Image, rng: np.random.Generator) -> bytes:
        # Re-encoded once by a marketplace or messenger at this quality (0-100); no other change.
        return encode(image, fmt, quality)
    return change


def grayscale(image: Image.Image, rng: np.random.Generator) -> bytes:
    # The camera's black-and-white filter, or a scanned copy: a one-channel JPEG (ITU-R 601 luma).
    return encode(image.convert("L"))


def _white_balance(red: tuple[float, float], blue: tuple[float, float]) -> Change:
    def change(image: Image.Image, rng: np.random.Generator) -> bytes:
        # Auto white balance off by roughly 1000-1500 K under shop lighting: red and blue gains (x).
        gains = np.array([rng.uniform(*red), 1.0, rng.uniform(*blue)], np.float32)
        return encode(_image(_pixels(image) * gains))
    return change


def _exposure(low_ev: float, high_ev: float) -> Change:
    def change(image: Image.Image, rng: np.random.Generator) -> bytes:
        # Exposure off by low_ev..high_ev stops: a gain of 2**ev in linear light, through the sRGB curve
        # (gamma 2.2), then clipped as the sensor would.
        linear = (_pixels(image) / 255) ** 2.2 * 2 ** rng.uniform(low_ev, high_ev)
        return encode(_image(255 * np.clip(linear, 0, 1) ** (1 / 2.2)))
    return change


def _rotated(transpose: Image.Transpose) -> Change:
    def change(image: Image.Image, rng: np.random.Generator) -> bytes:
        # The phone held sideways or upside down, with no EXIF orientation left to undo it: the pixels
        # themselves turned counter-clockwise by 90, 180 or 270 degrees.
        return encode(image.transpose(transpose))
    return change


def motion_blur(image: Image.Image, rng: np.random.Generator) -> bytes:
    # A slightly shaky hand: a straight streak of 0.3-0.45% of the longer side, any direction: 1-1.5 px
    # at the quality gate's 320 px working size (1-1.6 px on a 348 px photo, 2-3 px at 640x480). On real
    # phone photos 2 px there already has the gate retake ~7% as blurry, 1.5 px ~2%.
    length = rng.uniform(0.003, 0.0045) * max(image.size)
    return encode(Image.fromarray(cv2.filter2D(np.asarray(image), -1, _streak(length, rng.uniform(0, np.pi)))))


def _streak(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel exactly `length` px long at `angle` (radians): points along the segment
    spread bilinearly over the pixels they fall between (length 0 is the identity)."""
    side = 2 * int(np.ceil(length / 2)) + 1
    along = np.linspace(-length / 2, length / 2, max(2, int(length * 16)))
    xs, ys = side // 2 + along * np.cos(angle), side // 2 + along * np.sin(angle)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    kernel = np.zeros((side + 1, side + 1), np.float64)  # one spare row and column: weight 0 lands there
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy * wx)
    kernel = kernel[:side, :side]
    return (kernel / kernel.sum()).astype(np.float32)


# --- things in front of the package ----------------------------------------------------------------------

SKIN_TONES = ((232, 190, 165), (214, 160, 125), (175, 120, 90), (120, 80, 60))  # RGB, light to dark


def finger(image: Image.Image, rng: np.random.Generator) -> bytes:
    # The inspector's fingertip over the package: a skin-coloured capsule 10-14% of the shorter side wide,
    # from the left, right or bottom edge 25-40% of the way across. By construction it covers at most
    # 0.14 x 0.2 / 0.36 = 7.8% of the central 60% x 60% of the frame and 5.6% of the whole frame.
    width, height = image.size
    thick = rng.uniform(0.10, 0.14) * min(width, height)
    side = ("left", "right", "bottom")[rng.integers(3)]
    along = height if side == "bottom" else width
    reach, across = rng.uniform(0.25, 0.40) * along, rng.uniform(0.3, 0.7) * (width if side == "bottom" else height)
    box = {"left": (-thick, across - thick / 2, reach, across + thick / 2),
           "right": (width - reach, across - thick / 2, width + thick, across + thick / 2),
           "bottom": (across - thick / 2, height - reach, across + thick / 2, height + thick)}[side]
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(box, radius=thick / 2, fill=255)
    tone = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float32) * rng.uniform(0.9, 1.05)
    # a rounded finger is darker towards its sides: shade by how deep inside the mask a pixel is
    depth = _pixels(mask.filter(ImageFilter.GaussianBlur(thick / 4))) / 255
    return _cover(image, mask.filter(ImageFilter.GaussianBlur(1.0)), tone * (0.7 + 0.3 * depth[..., None]))


def sticker(image: Image.Image, rng: np.random.Generator) -> bytes:
    # A price or offer label stuck on the package: a white, yellow, orange or pink rectangle of 4-10% of
    # the central 60% x 60% of the frame (1.4-3.6% of the frame), aspect 1.3-2.2, centred in that central
    # area, with 2-4 dark lines of print.
    width, height = image.size
    area = rng.uniform(0.04, 0.10) * (0.6 * width) * (0.6 * height)
    aspect = rng.uniform(1.3, 2.2)
    w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
    cx, cy = width * rng.uniform(0.2, 0.8), height * rng.uniform(0.2, 0.8)
    colour = ((250, 250, 245), (250, 230, 60), (250, 150, 40), (245, 170, 200))[rng.integers(4)]
    label = Image.new("RGB", image.size, colour)
    draw = ImageDraw.Draw(label)
    lines = rng.integers(2, 5)
    for row in range(lines):
        y = cy - h / 2 + h * (row + 0.7) / (lines + 0.4)
        draw.rectangle((cx - w * 0.4, y, cx - w * 0.4 + w * rng.uniform(0.3, 0.8), y + h * 0.08), fill=(30, 30, 30))
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rectangle((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), fill=255)
    return _cover(image, mask, _pixels(label))


def _cover(image: Image.Image, mask: Image.Image, colour: np.ndarray) -> bytes:
    """`colour` (RGB, or (h, w, 3)) laid over the photo where `mask` (L, 0..255) says, soft edges blended."""
    alpha = _pixels(mask)[..., None] / 255
    return encode(_image(_pixels(image) * (1 - alpha) + colour * alpha))


# --- geometry ----------------------------------------------------------------------------------------------

def perspective(image: Image.Image, rng: np.random.Generator) -> bytes:
    # The item photographed well off-axis (roughly 25-40 degrees): one side (top, bottom, left or right)
    # appears 67-79% as long as the opposite one. The far side's ends move in by 6-10% of its length and
    # the near side's out by as much (cropped), so nothing is magnified more than 1.2x (enlarging blurs);
    # the slivers beside the far side show the photo mirrored, like more of the background.
    width, height = image.size
    frame = np.float32([[0, 0], [width, 0], [width, height], [0, height]])  # tl, tr, br, bl
    near = rng.integers(4)
    sides = [(0, 1), (1, 2), (2, 3), (3, 0)]  # top, right, bottom, left
    target = frame.copy()
    for (a, b), sign in ((sides[near], 1), (sides[(near + 2) % 4], -1)):
        step = (frame[a] - frame[b]) * rng.uniform(0.06, 0.10) * sign
        target[a], target[b] = frame[a] + step, frame[b] - step
    matrix = cv2.getPerspectiveTransform(frame, target)
    warped = cv2.warpPerspective(np.asarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT_101)
    return encode(Image.fromarray(warped))


def curved(image: Image.Image, rng: np.random.Generator) -> bytes:
    # A label on a bottle or tub: the photo wrapped round a cylinder (axis vertical or horizontal) and seen
    # from the front, the frame spanning +-40-60 degrees of it: the middle stretched up to 1.2x, the sides
    # squeezed, and shaded by up to 15% towards them as a curved surface turns away from the light.
    width, height = image.size
    half_arc = np.radians(rng.uniform(40, 60))
    vertical_axis = bool(rng.integers(2))
    across = width if vertical_axis else height
    screen = np.linspace(-1, 1, across, dtype=np.float64)  # where each output column (row) is, -1..1
    facing = np.arcsin(screen * np.sin(half_arc))  # angle of the surface seen there
    source = ((facing / half_arc + 1) / 2 * (across - 1)).astype(np.float32)
    shade = (1 - 0.3 * (1 - np.cos(facing))).astype(np.float32)
    map_x, map_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    if vertical_axis:
        map_x, shade = np.broadcast_to(source[None, :], map_x.shape), shade[None, :]
    else:
        map_y, shade = np.broadcast_to(source[:, None], map_y.shape), shade[:, None]
    warped = cv2.remap(np.asarray(image), np.ascontiguousarray(map_x), np.ascontiguousarray(map_y),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return encode(_image(warped.astype(np.float32) * shade[..., None]))


CHANGES: dict[str, Change] = {
    "glare": glare,
    "specular": specular,
    "sharpen": sharpen,
    "denoise": denoise,
    "half": _downscaled(2),
    "quarter": _downscaled(4),
    "jpeg-40": _encoded("JPEG", 40),
    "jpeg-70": _encoded("JPEG", 70),
    "jpeg-95": _encoded("JPEG", 95),
    "webp-75": _encoded("WEBP", 75),
    "grayscale": grayscale,
    "warm": _white_balance(red=(1.06, 1.14), blue=(0.86, 0.94)),
    "cool": _white_balance(red=(0.86, 0.94), blue=(1.06, 1.14)),
    "brighter": _exposure(0.4, 0.7),
    "darker": _exposure(-0.7, -0.4),
    "rotate-90": _rotated(Image.Transpose.ROTATE_90),
    "rotate-180": _rotated(Image.Transpose.ROTATE_180),
    "rotate-270": _rotated(Image.Transpose.ROTATE_270),
    "motion-blur": motion_blur,
    "finger": finger,
    "sticker": sticker,
    "perspective": perspective,
    "curved": curved,
}


def change_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """The generator of change `name` for the photo at `index`: the same whichever other changes run."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def parse_changes(text: str | None) -> list[str]:
    """'glare,half' -> ['glare', 'half']; None or '' -> every change; ValueError naming the valid ones."""
    return checked([name.strip() for name in (text or "").split(",") if name.strip()] or list(CHANGES))


def checked(names: Sequence[str]) -> list[str]:
    """`names` if each is a change; else a ValueError that lists the valid ones."""
    unknown = [name for name in names if name not in CHANGES]
    if unknown:
        raise ValueError(f"unknown change {', '.join(unknown)}; valid: {','.join(CHANGES)}")
    return list(names)


# --- evaluation through the service's path ---------------------------------------------------------------

@dataclass(frozen=True)
class Gate:
    """The two settings api.service decodes and checks photos with, when no Settings are at hand."""

    limits: Limits = Limits()
    quality_thresholds: QualityThresholds = QualityThresholds()


@dataclass(frozen=True)
class Outcome:
    label: int  # index into CLASSES
    verdict: str  # one of inference.classes.VERDICTS, or ERROR
    score: float | None = None
    reasons: tuple[str, ...] = ()  # retake: the quality reasons; error: the image error's code
    product: str | None = None  # reference models: the product the photo was recognised as


def evaluate_robustness(samples: Sequence[Sample], predictor: Predictor, settings_or_thresholds=None,
                        changes: Sequence[str] | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Every labelled photo, unchanged and under each change, answered as the HTTP service would answer it.
    `settings_or_thresholds`: api.settings.Settings, QualityThresholds, or None for the defaults."""
    from tqdm import tqdm

    gate = Gate(quality_thresholds=settings_or_thresholds) if isinstance(
        settings_or_thresholds, QualityThresholds) else settings_or_thresholds or Gate()
    names = [UNCHANGED, *checked(list(CHANGES) if changes is None else changes)]
    outcomes: dict[str, list[Outcome]] = {name: [] for name in names}
    with tqdm(total=len(samples) * len(names), unit="photo", desc="robustness", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(samples), FULL_RESOLUTION_BATCH):
            chunk = samples[start : start + FULL_RESOLUTION_BATCH]
            originals = [_original(sample.path, gate.limits) for sample in chunk]
            for name in names:
                photos = [_delivered(name, original, change_rng(seed, name, start + i))
                          for i, original in enumerate(originals)]
                outcomes[name] += judge(chunk, photos, predictor, gate)
                bar.update(len(chunk))
    return _report(outcomes, predictor, seed)


def _original(path: Path, limits: Limits) -> tuple[bytes, Image.Image] | Outcome:
    """The file's bytes and its photo decoded at full resolution, or the error every change will share."""
    try:
        data = path.read_bytes()
        return data, load_image(data, limits=limits).image
    except ImageError as exc:
        return Outcome(-1, ERROR, reasons=(exc.code,))
    except OSError:
        return Outcome(-1, ERROR, reasons=("unreadable",))


def _delivered(name: str, original, rng: np.random.Generator) -> bytes | Outcome:
    if isinstance(original, Outcome):
        return original
    data, image = original
    return data if name == UNCHANGED else CHANGES[name](image, rng)


def judge(samples: Sequence[Sample], photos: Sequence[bytes | Outcome], predictor: Predictor, gate) -> list[Outcome]:
    """The service's answer to each photo (bytes): decoded, gated and prepared one by one (as
    api.service does), then scored in one batch."""
    gated = [photo if isinstance(photo, Outcome) else _gated(photo, predictor, gate) for photo in photos]
    ready = [item for item in gated if isinstance(item, Prepared)]
    scores = iter(predictor.scores(*stacked(ready)) if ready else [])
    answers = []
    for sample, item in zip(samples, gated):
        if isinstance(item, Prepared):
            prediction = predictor.decide(float(next(scores)))
            product = predictor.product_of(item)
            answers.append(Outcome(sample.label, prediction.verdict, prediction.score, product=product))
        else:
            answers.append(Outcome(sample.label, item.verdict, reasons=item.reasons))
    return answers


def _gated(data: bytes, predictor: Predictor, gate) -> Prepared | Outcome:
    try:
        _, quality, prepared = decode_and_prepare(data, predictor, gate.limits, gate.quality_thresholds)
    except ImageError as exc:
        return Outcome(-1, ERROR, reasons=(exc.code,))
    return prepared if prepared is not None else Outcome(-1, RETAKE, reasons=quality.reasons)


# --- the report ---------------------------------------------------------------------------------------------

def _report(outcomes: dict[str, list[Outcome]], predictor: Predictor, seed: int) -> dict:
    rows = {name: summarize(answers) for name, answers in outcomes.items()}
    baseline = rows[UNCHANGED]["caught"]
    for row in rows.values():
        row["caught_change_points"] = 100 * (row["caught"] - baseline)
        row["passes"] = bool(row["genuine_as_counterfeit"] <= GOAL_GENUINE_AS_COUNTERFEIT
                             and row["caught_change_points"] >= -GOAL_CAUGHT_DROP)
    model = predictor.metadata
    return {"model": {"name": model.name, "version": model.version}, "thresholds": model.thresholds.to_dict(),
            "seed": seed, "goals": {"genuine_as_counterfeit_max": GOAL_GENUINE_AS_COUNTERFEIT,
                                    "caught_drop_max_points": GOAL_CAUGHT_DROP},
            "changes": rows}


def summarize(answers: Sequence[Outcome]) -> dict:
    """One change's row. Shares are of ALL photos of the class (retaken and failed ones included), so a
    change cannot look harmless by having its hard photos retaken; ROC-AUC is over the scored ones."""
    genuine = [a for a in answers if a.label == CLASSES.index(GENUINE)]
    fake = [a for a in answers if a.label == CLASSES.index(COUNTERFEIT)]
    # a photo retaken for two reasons counts under both
    reasons = Counter(reason for a in answers if a.verdict == RETAKE for reason in a.reasons)
    return {
        "n": len(answers),
        "genuine_as_counterfeit": share(genuine, COUNTERFEIT),
        "genuine_inconclusive": share(genuine, INCONCLUSIVE),
        RETAKE: share(answers, RETAKE),
        "retake_reasons": dict(sorted(reasons.items())),
        "errors": sum(a.verdict == ERROR for a in answers),
        "caught": share(fake, COUNTERFEIT),
        "roc_auc": scored_auc(answers),
    }


def share(answers: Sequence[Outcome], verdict: str) -> float:
    """The share of `answers` given `verdict`; NaN for no answers."""
    return true_share([a.verdict == verdict for a in answers])


def scored_auc(answers: Sequence[Outcome]) -> float:
    """ROC-AUC over the answers that got a score (retaken and failed photos have none)."""
    scored = [a for a in answers if a.score is not None]
    return roc_auc(np.array([a.score for a in scored]), np.array([a.label for a in scored]))


def format_table(report: dict) -> str:
    """One row per change, for a terminal: shares in %, the caught change in points."""
    lines = [f"{'change':<12} {'n':>5} {'gen->cf':>8} {'gen inc':>8} {'retake':>7} {'caught':>7} {'diff':>6} "
             f"{'AUC':>6}  pass  retake reasons"]
    for name, row in report["changes"].items():
        reasons = ", ".join(f"{reason} {count}" for reason, count in row["retake_reasons"].items())
        lines.append(f"{name:<12} {row['n']:>5} {percent(row['genuine_as_counterfeit']):>8} "
                     f"{percent(row['genuine_inconclusive']):>8} {percent(row[RETAKE]):>7} "
                     f"{percent(row['caught']):>7} {row['caught_change_points']:>+6.1f} {row['roc_auc']:>6.3f}  "
                     f"{'yes ' if row['passes'] else 'NO  '}  {reasons}".rstrip())
    goals = report["goals"]
    lines.append(f"goals: genuines called counterfeit <= {goals['genuine_as_counterfeit_max']:.0%}; "
                 f"counterfeits caught within {goals['caught_drop_max_points']:g} points of unchanged")
    return "\n".join(lines)


def percent(share: float) -> str:
    """A share (0..1) for people, one decimal: "12.5%"; "n/a" when it is undefined (NaN)."""
    return "n/a" if share != share else f"{100 * share:.1f}%"


def write_report(report: dict, report_dir: Path) -> Path:
    """DIR/robustness.json (undefined figures, e.g. AUC with one class scored, as null)."""
    from evaluation.evaluate import _nan_to_none

    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "robustness.json"
    path.write_text(json.dumps(_nan_to_none(report), indent=2, allow_nan=False) + "\n")
    return path
