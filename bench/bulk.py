"""Benchmark: `counterfeit screen MANIFEST` on a large manifest: bounded memory, a kill -9 and a resume.

A manifest of ROWS rows (default 100,000) names a few hundred synthetic 640x480 packaging photos the demo
model knows (each photo repeated, as listings reuse photos). The bench:
  1. screens UNIQUE distinct photos once with no answer cache (--cache 0): the honest photos/s of the
     pipeline, with nothing answered from the cache;
  2. screens the large manifest to OUT.jsonl, SIGKILLs it once a third of the rows are written, then reruns
     it to the same output; checks that every id is there exactly once; reports the peak resident memory of
     both runs (goal: at most 1 GB) and the rows/s of the whole manifest (repeated photos answered from the
     cache, keyed by sha256 and model version).

    .venv/bin/python bench/bulk.py [--rows 100000] [--photos 300] [--unique 100]

Linux only (reads /proc and getrusage).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from api.settings import DEMO_MODEL
from datatools.synth import jpeg_bytes, make_product_design, photograph, render_artwork

sys.path.insert(0, str(Path(__file__).parent))
from memory import peak_rss_mb  # noqa: E402  (bench scripts are run as files, not as a package)

GOAL_MB = 1024
KILL_AT = 1 / 3  # of the rows written: where the first run is killed


def write_photos(folder: Path, count: int) -> list[str]:
    """COUNT distinct photos of a product of the demo model (trained on synth seed 0) -> their file names."""
    folder.mkdir(parents=True)
    design = make_product_design(0, 0)
    names = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        name = f"photo-{seed:04d}.jpg"
        (folder / name).write_bytes(jpeg_bytes(photograph(render_artwork(design, rng.uniform()), rng), 90))
        names.append(name)
    return names


def write_manifest(path: Path, names: list[str], rows: int) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image"])
        writer.writerows([f"listing-{i:07d}", f"photos/{names[i % len(names)]}"] for i in range(rows))
    return path


def screen_command(manifest: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "counterfeit", "screen", str(manifest), "--model", str(DEMO_MODEL),
            "--output", str(output), *extra]


def run_measured(command: list[str]) -> tuple[float, float]:
    """COMMAND in a fresh wrapper process -> (its peak RSS MB, seconds). RUSAGE_CHILDREN's maximum is the
    command's own, the wrapper being new."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL, "
               "check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    peak_kb = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True,
                             check=True).stdout
    return int(peak_kb) / 1024, time.perf_counter() - start


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_and_kill(command: list[str], output: Path, at_rows: int) -> tuple[float, float, int]:
    """Start COMMAND, SIGKILL it once OUTPUT holds AT_ROWS lines -> (peak RSS MB, seconds, lines then)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    try:
        while lines_in(output) < at_rows and process.poll() is None:
            peak = max(peak, peak_rss_mb(process.pid))
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    return peak, time.perf_counter() - start, lines_in(output)


def ids_once(output: Path, rows: int) -> bool:
    """Every listing id exactly once (and no torn line left)."""
    ids = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    return len(ids) == rows == len(set(ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="manifest rows (default 100,000)")
    parser.add_argument("--photos", type=int, default=300, help="distinct photos the rows repeat (default 300)")
    parser.add_argument("--unique", type=int, default=100, help="photos of the no-cache run (default 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = write_photos(root / "photos", args.photos)
        unique = write_manifest(root / "unique.csv", names[: args.unique], args.unique)
        peak, seconds = run_measured(screen_command(unique, root / "unique.jsonl", "--cache", "0"))
        print(f"unique photos, no cache: {args.unique} photos in {seconds:.1f} s = {args.unique / seconds:.1f} "
              f"photos/s (process start and model load included), peak {peak:.0f} MB")
        manifest, output = write_manifest(root / "big.csv", names, args.rows), root / "big.jsonl"
        command = screen_command(manifest, output)
        killed_peak, killed_s, written = run_and_kill(command, output, int(args.rows * KILL_AT))
        print(f"{args.rows:,} rows of {args.photos} photos: killed (SIGKILL) after {killed_s:.1f} s with "
              f"{written:,} rows written, peak {killed_peak:.0f} MB")
        resumed_peak, resumed_s = run_measured(command)
        rate = args.rows / (killed_s + resumed_s)
        ok = ids_once(output, args.rows)
        print(f"  resumed: the rest in {resumed_s:.1f} s, peak {resumed_peak:.0f} MB; every id once: {ok}; "
              f"{rate:,.0f} rows/s over both runs (repeated photos answered from the cache)")
        met = ok and max(killed_peak, resumed_peak) <= GOAL_MB
        print(f"bulk goals (peak <= {GOAL_MB} MB, resumed without loss or duplicates): "
              f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
