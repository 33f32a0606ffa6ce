"""The photo-quality gate: is this photo good enough to judge? If not, say why and what to do.

A confident verdict on a bad photo is worse than none, so the API answers "retake" instead of scoring a
photo that is too small, blurry, too dark, overexposed, washed out by a reflection over the middle of the
frame (glare), or black and white (grayscale: a counterfeit's wrong ink cannot be seen without colour).

Every measure is taken on a grayscale copy no larger than WORKING_SIDE on its longer side, so it does not
depend on the photo's resolution. WORKING_SIDE is the default model input's width: the server checks the
image as `load_image` decoded it for the model (JPEGs at reduced scale, no smaller than the model input),
and a 640x480 phone JPEG arrives as 320x240. Smaller images are measured as they are, never upscaled:
upscaling would make every small photo look blurry as well as small.

The default thresholds were tuned on 204 synthetic 640x480 photos (datatools/synth.py, some with mild
defocus blur) and degraded copies of each, JPEG-encoded and decoded as the server does: Gaussian blur of
radius 3-6, exposure x0.15-0.25, exposure x3 (clipped), shrunk to 120x90. Every clean photo passes and every
degraded one fails for its own reason only, except that x3 on a dark-toned photo (mean luma under ~80)
gives a normally exposed photo, which passes. The margins are in the comments of QualityThresholds
(clean = worst clean photo, bad = worst degraded one); tests/test_quality.py repeats the check.

Glare and grayscale were set on 1,180 real phone photos of grocery packages (../shared/real, 348x348, in
supermarket light, many with white bottles and cartons and some with real reflections): none is retaken
for either, and they are judged only on a normally exposed photo, because clipping and darkness alone
drain colour and blow out highlights, and "too dark" / "overexposed" already say what to do then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORKING_SIDE = 320  # px, longer side of the grayscale copy the measures are taken on
# The smallest (width, height) a photo may be decoded at (inference.predictor.decode) for the measures to
# mean what they were tuned for: a 4:3 photo at WORKING_SIDE. A model with a smaller input does not make
# its photos look sharper by having them decoded smaller.
MEASURED_SIZE = (WORKING_SIDE, WORKING_SIDE * 3 // 4)
CLIPPED_LEVEL = 250  # luma at or above this counts as blown out
_FLAT = 1.0  # luma variance (levels^2) below which a frame is blank

# The middle of the frame, where the package's print is, as a share of each side kept: glare at the edges
# (shelf lights, a white wall) hides nothing that is judged.
CENTRE = 0.6

REASONS: tuple[str, ...] = ("too_small", "blurry", "too_dark", "overexposed", "glare", "grayscale",
                            "compressed")  # check()
NOT_RECOGNISED = "not_recognised"  # reference models only (inference/align.py): no product registered

# Reason codes in the order they are reported, each with the problem and what the inspector should do.
_ADVICE: dict[str, tuple[str, str]] = {
    "too_small": ("too small", "move closer or send the photo at full resolution"),
    "blurry": ("blurry", "hold the phone still and tap to focus"),
    "too_dark": ("too dark", "add light or move to a brighter spot"),
    "overexposed": ("overexposed", "avoid direct light and glare on the package"),
    "glare": ("washed out by a reflection that covers the label", "tilt the item or move away from the light"),
    "grayscale": ("in black and white (no colour)",
                  "send the colour photo or switch off the camera's black-and-white filter"),
    "compressed": ("a heavily compressed copy", "send the original photo, not a compressed copy"),
    NOT_RECOGNISED: ("not recognised as one of the model's products",
                     "photograph the front of the package so that it fills most of the frame"),
}


@dataclass(frozen=True)
class QualityThresholds:
    min_side: int = 240  # px of the original's shorter side: the default model input's height (bad: 90)
    min_sharpness: float = 0.055  # see sharpness(); clean >= 0.084, blurred <= 0.036
    min_brightness: float = 45.0  # mean luma 0..255; clean >= 48.5, darkened <= 42.1
    max_brightness: float = 200.0  # mean luma; clean <= 189.7, x3 of a photo of mean luma >= 100: >= 208
    max_clipped: float = 0.2  # share of luma >= CLIPPED_LEVEL; clean <= 0.124
    # Largest connected blob of luma >= CLIPPED_LEVEL inside the CENTRE box, as a share of that box.
    # Real photos <= 0.049 (white caps and cartons; 99th percentile 0.024); a lamp's reflection
    # (evaluation/robustness.py `glare`) 0.045-0.24 (5th-95th percentile; half of them retaken); the same
    # photos 0.4-0.7 EV brighter: 3% retaken, their white print blown out in the middle.
    max_glare: float = 0.12
    # 99th percentile of chroma max(|Cb-128|, |Cr-128|), levels 0..128: real photos >= 25, any
    # black-and-white photo <= 1 (JPEG colour noise).
    min_chroma: float = 4.0
    # JPEG quality the file was last saved at (inference.images.jpeg_quality), below: a compressed copy
    # (a messenger's or a marketplace's thumbnail), whose blocks and lost colour read as a different print
    # (the demo model called genuine-1.jpg re-saved at 30 counterfeit, 0.95). Phone photos: 75-98.
    min_jpeg_quality: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.min_brightness < self.max_brightness <= 255:
            raise ValueError(
                f"Brightness thresholds must satisfy 0 <= min < max <= 255; "
                f"got min {self.min_brightness}, max {self.max_brightness}."
            )
        if not 0 <= self.max_clipped <= 1:
            raise ValueError(f"max_clipped is a share of pixels, 0..1; got {self.max_clipped}.")
        if not 0 <= self.max_glare <= 1:
            raise ValueError(f"max_glare is a share of the frame's centre, 0..1; got {self.max_glare}.")
        if not 0 <= self.min_chroma <= 128:
            raise ValueError(f"min_chroma is a chroma level, 0..128; got {self.min_chroma}.")
        if not 0 <= self.min_jpeg_quality <= 100:
            raise ValueError(f"min_jpeg_quality is a JPEG quality, 0..100; got {self.min_jpeg_quality}.")
        if self.min_side < 0 or self.min_sharpness < 0:
            raise ValueError(f"min_side and min_sharpness must be >= 0; got {self.min_side}, {self.min_sharpness}.")


@dataclass(frozen=True)
class QualityReport:
    ok: bool
    reasons: tuple[str, ...]  # stable codes, in REASONS order: too_small, blurry, too_dark, overexposed,
    # glare, grayscale, compressed, not_recognised
    message: str  # one sentence for the person holding the phone
    measures: dict  # sharpness, brightness, clipped (0..1), glare (0..1), chroma (levels) and min_side (px),
    # as compared with the thresholds


def check(
    image: Image.Image, original_size: tuple[int, int], thresholds: QualityThresholds = QualityThresholds(),
    jpeg_quality: int | None = None,
) -> QualityReport:
    """Judge `image` (as decoded, possibly at reduced scale) of a photo that was `original_size` (w, h), a
    JPEG last saved at `jpeg_quality` (None: not a JPEG, or not known)."""
    measures = measure(image, original_size)
    if jpeg_quality is not None:
        measures["jpeg_quality"] = int(jpeg_quality)
    reasons = _reasons(measures, thresholds)
    return QualityReport(ok=not reasons, reasons=reasons, message=advice(reasons), measures=measures)


def not_recognised(report: QualityReport) -> QualityReport:
    """A photo that passed the gate but shows none of a reference model's products: retake it."""
    reasons = (*report.reasons, NOT_RECOGNISED)
    return QualityReport(ok=False, reasons=reasons, message=advice(reasons), measures=report.measures)


def nothing_recognised(report: QualityReport) -> QualityReport:
    """A photo with too little detail that registers to none of a reference model's products: most often no
    known product is in it (a wall, a table), else one too blurred to recognise. Said in that order."""
    message = ("No known product is recognised in the photo: photograph the front of one of the model's "
               "products so that it fills most of the frame, hold the phone still and tap to focus.")
    return QualityReport(ok=False, reasons=(*report.reasons, NOT_RECOGNISED), message=message,
                         measures=report.measures)


def measure(image: Image.Image, original_size: tuple[int, int]) -> dict:
    """The measures `check` compares with its thresholds."""
    luma = working_luma(image)
    return {
        "sharpness": round(sharpness(luma), 4),
        "brightness": round(float(luma.mean()), 2),
        "clipped": round(float(np.count_nonzero(luma >= CLIPPED_LEVEL)) / luma.size, 4),
        "glare": round(glare(luma), 4),
        "chroma": round(chroma(image), 2),
        "min_side": int(min(original_size)),
    }


def working_luma(image: Image.Image) -> np.ndarray:
    """Luma (float32, 0..255) of the image shrunk to fit WORKING_SIDE; small images are not enlarged."""
    gray = image.convert("L")
    scale = WORKING_SIDE / max(gray.size)
    if scale < 1:
        size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        # BOX averages like JPEG's reduced-scale (draft) decoding does, so a photo measures the same whether
        # it arrives as a draft-decoded JPEG or as a full-size PNG/HEIC (within 2% on synth photos;
        # BILINEAR, which blurs more, gave 1.4-3x lower sharpness for the full-size one).
        gray = gray.resize(size, Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float32)


def sharpness(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the variance of the luma itself: how much of the photo's
    contrast is fine detail. Both scale alike with exposure, so a dark photo does not also read as blurry
    (nor an overexposed one as sharp), and the gate names the one problem the inspector has to fix."""
    contrast = float(luma.var())
    if min(luma.shape) < 3 or contrast < _FLAT:
        return 0.0  # a blank frame has no detail to focus on
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * centre
    return float(laplacian.var()) / contrast


def glare(luma: np.ndarray) -> float:
    """The largest 8-connected blob of blown-out luma inside the CENTRE box, as a share of that box: one
    reflection over the print. Many small glints or a white label's bright patches add up to no big blob."""
    import cv2  # only needed here and for registration: keeps `import inference.quality` light

    height, width = luma.shape
    top, left = round(height * (1 - CENTRE) / 2), round(width * (1 - CENTRE) / 2)
    centre = luma[top : height - top, left : width - left]
    if centre.size == 0:
        return 0.0
    blown = (centre >= CLIPPED_LEVEL).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(blown, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    return largest / centre.size


def chroma(image: Image.Image) -> float:
    """99th percentile of max(|Cb-128|, |Cr-128|) (levels 0..128) over the image shrunk like working_luma:
    how much colour its most colourful 1% of pixels has. A black-and-white photo has none anywhere."""
    # reduce() box-averages by a whole factor: 5x faster than resize() here, and a percentile does not
    # need working_luma's exact size.
    small = image.reduce(max(1, math.ceil(max(image.size) / WORKING_SIDE)))
    cb, cr = (np.asarray(plane, dtype=np.int16) for plane in small.convert("YCbCr").split()[1:])
    return float(np.percentile(np.maximum(np.abs(cb - 128), np.abs(cr - 128)), 99))


def _reasons(measures: dict, thresholds: QualityThresholds) -> tuple[str, ...]:
    failed = {
        "too_small": measures["min_side"] < thresholds.min_side,
        "blurry": measures["sharpness"] < thresholds.min_sharpness,
        "too_dark": measures["brightness"] < thresholds.min_brightness,
        "overexposed": (measures["brightness"] > thresholds.max_brightness
                        or measures["clipped"] > thresholds.max_clipped),
    }
    # Judged on a normally exposed photo only: darkness drains colour and overexposure blows out whole
    # areas, and the exposure reason already tells the inspector what to do.
    exposed = not (failed["too_dark"] or failed["overexposed"])
    failed["glare"] = exposed and measures["glare"] > thresholds.max_glare
    failed["grayscale"] = exposed and measures["chroma"] < thresholds.min_chroma
    failed["compressed"] = measures.get("jpeg_quality", 100) < thresholds.min_jpeg_quality
    return tuple(reason for reason in REASONS if failed[reason])


def advice(reasons: tuple[str, ...]) -> str:
    """One sentence: what is wrong with the photo and what to do about it."""
    if not reasons:
        return "The photo is good enough to judge."
    problems = _join([_ADVICE[reason][0] for reason in reasons])
    fixes = _join([_ADVICE[reason][1] for reason in reasons])
    return f"The photo is {problems}: {fixes}, then retake it."


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
