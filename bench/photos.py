"""Benchmark: end-to-end cost of a 12 MP phone JPEG vs a 640x480 JPEG, bytes -> model input.

Each run is what the server does per photo with the demo model: decode for its input size (JPEGs at
reduced scale), the quality gate, then `predictor.prepare` (for a reference model: registration to its
product's reference) and the model. Both photos show the same synth packaging photo; the
12 MP one is that photo upscaled to 4000x3000 with a little sensor noise added back (upscaling alone
gives unrealistically smooth, small files) and encoded at quality 90, as a phone would. Prints the
median time of each, side by side, and their ratio (goal: 12 MP at most 2x the 640x480 time).

The 12 MP photo decodes at reduced scale (1/4 for a 640x480 input: 1000x750), the smallest scale libjpeg
offers that is no smaller than the model input; what remains is Huffman decoding, which must read every
byte of the file. The "decode MB/s" column shows both photos decode at about the same bytes per second:
the decoding cost follows the file size (20x here), and the ratio stays within 2x only when the model's
own work per photo outweighs it.

Run: .venv/bin/python bench/photos.py [--runs N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

from api.settings import DEMO_MODEL
from datatools.synth import jpeg_bytes, make_product_design, photograph, render_artwork
from inference.predictor import Predictor, stacked
from inference.quality import check

PHONE_SIZE = (4000, 3000)
PHONE_NOISE = 2.0  # luma noise (8-bit levels) of a denoised phone photo at full resolution
GOAL_RATIO = 2.0


def synth_photo(seed: int = 0) -> Image.Image:
    """One realistic 640x480 packaging photo from the synthetic generator."""
    return photograph(render_artwork(make_product_design(seed, 0), 0.3), np.random.default_rng(seed))


def phone_jpeg(photo: Image.Image, seed: int = 0) -> bytes:
    """The photo as a 12 MP phone JPEG: upscaled, noisy, quality 90."""
    big = np.asarray(photo.resize(PHONE_SIZE, Image.Resampling.BICUBIC), np.float32)
    noise = np.random.default_rng(seed).standard_normal(big.shape[:2], dtype=np.float32)[..., None]
    big = np.clip(big + noise * PHONE_NOISE, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decoder(predictor: Predictor):
    return lambda data: predictor.load(data).image


def preparer(predictor: Predictor):
    return lambda data: predictor.prepare(predictor.load(data).image)


def end_to_end(predictor: Predictor):
    """What one inspection costs without HTTP: decode, quality gate, prepare, the demo model."""
    def run(data: bytes) -> str:
        loaded = predictor.load(data)
        check(loaded.image, (loaded.width, loaded.height))
        prepared = predictor.prepare(loaded.image)
        score = predictor.scores(*stacked([prepared]))[0]
        return predictor.decide(float(score)).verdict
    return run


def median_seconds(step, data: bytes, runs: int) -> float:
    step(data)  # warm-up: the first call pays for imports and allocations
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per photo (the median is reported)")
    args = parser.parse_args()
    photo = synth_photo()
    photos = {"640x480": jpeg_bytes(photo, 90), "4000x3000": phone_jpeg(photo)}
    predictor = Predictor(DEMO_MODEL)
    decode, prepare, inspect = decoder(predictor), preparer(predictor), end_to_end(predictor)
    print(f"demo model {predictor.metadata.name} ({predictor.spec.width}x{predictor.spec.height} input)")
    print(f"{'photo':<10} {'bytes':>10} {'decode ms':>10} {'+prep ms':>9} {'end-to-end ms':>14} {'decode MB/s':>12}")
    totals, prepared = {}, {}
    for name, data in photos.items():
        runs = args.runs * (4 if name == "640x480" else 1)  # the small photo is quicker, its median noisier
        decoding = median_seconds(decode, data, runs)
        prepared[name] = median_seconds(prepare, data, runs)
        totals[name] = median_seconds(inspect, data, runs)
        # JPEG bytes decoded per second: reduced-scale decoding still has to Huffman-decode every byte.
        print(f"{name:<10} {len(data):>10,} {decoding * 1e3:>10.2f} {prepared[name] * 1e3:>9.2f} "
              f"{totals[name] * 1e3:>14.2f} {len(data) / decoding / 1e6:>12.0f}")
    ratio = totals["4000x3000"] / totals["640x480"]
    verdict = "meets" if ratio <= GOAL_RATIO else "misses"
    print(f"end-to-end ratio 12 MP / 640x480: {ratio:.2f}x ({verdict} the goal of at most {GOAL_RATIO:.0f}x); "
          f"decode + prepare alone: {prepared['4000x3000'] / prepared['640x480']:.2f}x")


if __name__ == "__main__":
    main()
