"""Benchmark: `datatools.audit.audit()` throughput on N distinct 640x480 JPEG photos (default 10,000).

Rendering 10,000 synth photos would take minutes, so a handful are rendered once and every file is one
of them blended with its own random smooth colour field and re-encoded at its own JPEG quality: distinct
bytes and distinct perceptual hashes (no duplicate groups), the same pipeline for both classes (no
shortcut). Generation is not timed. Run: .venv/bin/python bench/audit.py [--images N] [--data DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datatools.audit import audit
from datatools.synth import jpeg_bytes, write_dataset
from inference.classes import CLASSES

FRAME = (640, 480)
BASE_PHOTOS = 20
_bases: list[Image.Image] = []  # set in each generator process by _keep_bases


def base_photos(folder: Path) -> list[Image.Image]:
    """A few real synth photos, decoded."""
    write_dataset(folder, seed=5, products=4, n_train=BASE_PHOTOS - 4, n_val=2, n_test=2, image_size=FRAME,
                  progress=False)
    return [Image.open(path).convert("RGB") for path in sorted(folder.rglob("*.jpg"))]


def _keep_bases(bases: list[Image.Image]) -> None:
    # A pool initializer: forked workers inherit the photos once instead of receiving them per task.
    _bases[:] = bases


def _variation(task: tuple[int, Path]) -> None:
    """File `index`: a base photo blended with a random smooth field, at a random JPEG quality."""
    index, target = task
    rng = np.random.default_rng([17, index])
    grid = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = Image.fromarray(grid).resize(FRAME, Image.Resampling.BICUBIC)
    # Each base photo serves both classes (index // 2), so its content says nothing about the label.
    photo = Image.blend(_bases[(index // 2) % len(_bases)], field, 0.5)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(jpeg_bytes(photo, int(rng.integers(75, 96))))


def generate(data: Path, images: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        bases = base_photos(Path(scratch) / "bases")
    tasks = [(index, data / _split(index / images) / CLASSES[index % 2] / "bench" / f"{index:06d}.jpg")
             for index in range(images)]  # classes alternate, so every split is balanced
    context = multiprocessing.get_context("fork")
    with context.Pool(min(2, os.cpu_count() or 1), initializer=_keep_bases, initargs=(bases,)) as pool:
        for _ in pool.imap_unordered(_variation, tasks, chunksize=64):
            pass


def _split(position: float) -> str:
    return "train" if position < 0.7 else "val" if position < 0.85 else "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="how many photos (default 10000)")
    parser.add_argument("--data", type=Path, help="keep the generated data here and reuse it on later runs")
    parser.add_argument("--workers", type=int, default=None, help="audit worker processes (default: all cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or Path(scratch) / "data"
        if not (data / "train").is_dir():
            started = time.perf_counter()
            generate(data, args.images)
            print(f"generated {args.images} photos in {time.perf_counter() - started:.1f} s (not timed below)")
        started = time.perf_counter()
        result = audit(data, progress=False, workers=args.workers)
        seconds = time.perf_counter() - started
    timing = result.stats["timing"]
    workers = args.workers or os.cpu_count()
    print(f"audit: {result.stats['images']} images in {seconds:.1f} s = {result.stats['images'] / seconds:.0f} "
          f"images/s with {workers} worker process(es) (reading and hashing {timing['inspect_s']:.1f} s, "
          f"duplicates {timing['duplicates_s']:.1f} s, shortcut {timing['shortcut_s']:.1f} s)")
    print(f"findings: {len(result.errors())} errors, {len(result.warnings())} warnings; "
          f"shortcut ROC-AUC {result.stats['shortcut']['auc']:.2f}")


if __name__ == "__main__":
    main()
