"""Benchmark: `counterfeit screen MANIFEST --ray` against the local path, on this machine.

One manifest of N distinct synthetic 640x480 photos the demo model knows (no repeats: the answer cache
cannot help), screened
  - by the local path (evaluation.bulk: one process, onnxruntime on every core, 2 decoding threads),
  - on a local Ray instance with 1 and with 2 actors (one CPU and one onnxruntime thread each).
Times are from the start of the screening to the last row written, in one process with Ray already
started (Ray's own start is printed apart): actors starting and loading the model count as Ray's overhead.
Goal: Ray with 2 actors at most 10% slower than the local path.

    .venv/bin/python bench/ray_screen.py [--photos 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from api.settings import DEMO_MODEL, Settings
from evaluation.bulk import manifest_screener, screen_rows
from evaluation.manifest import read_rows
from evaluation.ray_screen import RayOptions, screen_on_ray
from inference.predictor import Predictor

sys.path.insert(0, str(Path(__file__).parent))
from bulk import write_manifest, write_photos  # noqa: E402  (bench scripts are run as files, not as a package)

OVERHEAD_GOAL = 0.10


def local_seconds(manifest: Path) -> float:
    """Seconds for the local path to screen the manifest (model loaded before the clock starts)."""
    settings = Settings()
    screener = manifest_screener(Predictor(DEMO_MODEL), manifest, settings.limits, settings.quality_thresholds,
                                 cache=0)
    start = time.perf_counter()
    rows = sum(len(batch) for batch in screen_rows(read_rows(manifest), screener))
    seconds = time.perf_counter() - start
    screener.close()
    assert rows > 0
    return seconds


def ray_seconds(manifest: Path, output: Path, workers: int) -> float:
    start = time.perf_counter()
    counts, _ = screen_on_ray(manifest, DEMO_MODEL, output, None, RayOptions(workers=workers, cache=0))
    seconds = time.perf_counter() - start
    assert sum(counts.values()) > 0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400, help="distinct photos in the manifest (default 400: "
                        "with fewer, the actors' start, a few seconds, dominates)")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = write_manifest(root / "m.csv", write_photos(root / "photos", args.photos), args.photos)
        local = local_seconds(manifest)
        print(f"{args.photos} distinct 640x480 photos, demo model, {os.cpu_count()} CPUs")
        print(f"  local path:      {local:6.1f} s  {args.photos / local:5.1f} photos/s")
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        print(f"  (Ray's start: {time.perf_counter() - start:.1f} s, not counted)")
        try:
            timings = {n: ray_seconds(manifest, root / f"ray{n}.parquet", n) for n in (1, 2)}
        finally:
            ray.shutdown()
    for workers, seconds in timings.items():
        print(f"  Ray, {workers} actor{'s' if workers > 1 else ' '}:    {seconds:6.1f} s  "
              f"{args.photos / seconds:5.1f} photos/s")
    overhead = timings[2] / local - 1
    print(f"  2 actors / 1 actor speed-up: {timings[1] / timings[2]:.2f}x; Ray (2 actors) vs local: "
          f"{overhead:+.0%} time; {'meets' if overhead <= OVERHEAD_GOAL else 'MISSES'} the goal "
          f"(<= {OVERHEAD_GOAL:.0%})")


if __name__ == "__main__":
    main()
