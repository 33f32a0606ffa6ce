"""Benchmark: peak memory of the server and of `counterfeit screen` under the loads of issue #13.

Server (`counterfeit serve` in a subprocess, the demo model, loopback only, a fresh process per load so
each peak is its own): its peak resident memory (VmHWM in /proc/PID/status) for
  - one POST /v1/screenings of 4 copies of a 1-bit 8,900 x 8,900 PNG (about 10 KB, under the 80 Mpx limit),
  - 8 parallel POST /v1/inspections of that PNG;
  - the multipart attack: 3 clients at once, each posting 990 file parts of 1 MB to /v1/screenings, and
    20 text fields of 1 MB to /v1/inspections.
Goal: at most 1.5 GB each, every answer a 200 or a 503 `server_busy` (never a crash or swap); the attack's
answers are 400/413/422 refusals.

`counterfeit screen` (a subprocess per run): peak resident memory on a folder of N and of 4N synthetic
640x480 JPEG packaging photos the demo model knows. Goal: the same for both (memory independent of the
number of photos, within 10%) and at most 1 GB.

    .venv/bin/python bench/memory.py [--photos N]

Linux only (reads /proc and getrusage); every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from api.settings import DEMO_MODEL
from datatools.synth import jpeg_bytes, make_product_design, photograph, render_artwork

sys.path.insert(0, str(Path(__file__).parent))
from server import free_port, start_server  # noqa: E402  (bench scripts are run as files, not as a package)

MB = 1024 * 1024
HUGE_SIDE = 8900  # px: 79 Mpx, just under the default 80 Mpx limit
SERVER_GOAL_MB = 1536
SCREEN_GOAL_MB = 1024
SCREEN_SPREAD = 0.10  # "independent of the number of photos": 4N photos peak within 10% of N photos
ATTACK_PARTS = 990  # file parts per request: 990 MB, under the body limit, far over the image count
# Text fields per request, 1 MB each: 20 MB, under the 25 MB upload limit, so that the route's field limits
# answer (4 fields of at most 16 KB), not the body limit (400 such fields get a 413 before any parsing).
ATTACK_FIELDS = 20
DISTINCT_PHOTOS = 8  # synthetic photos rendered; the folders repeat them under different names


def huge_bilevel_png() -> bytes:
    """A 1-bit 8,900^2 PNG: a few KB on the wire, 79 Mpx once decoded."""
    image = Image.new("1", (HUGE_SIDE, HUGE_SIDE), 1)
    image.paste(0, (HUGE_SIDE // 4, HUGE_SIDE // 4, HUGE_SIDE // 2, HUGE_SIDE // 2))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def attack_parts(field: str) -> list[tuple]:
    """ATTACK_PARTS file parts of 1 MB each (one bytes object, sent ATTACK_PARTS times: the client holds 1 MB)."""
    part = bytes(MB)
    return [(field, (f"{i}.jpg", part, "image/jpeg")) for i in range(ATTACK_PARTS)]


def attack_fields() -> list[tuple]:
    """ATTACK_FIELDS text fields of 1 MB each, with one small image."""
    text = b"x" * MB
    return [("image", ("p.jpg", b"\xff\xd8", "image/jpeg")),
            *((f"field{i}", (None, text)) for i in range(ATTACK_FIELDS))]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far, MB (VmHWM: high-water mark, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def post_all(url: str, requests: list[list[tuple]], timeout_s: float = 300) -> tuple[list[int], float]:
    """POST each multipart file list at once, one thread each -> (status codes, seconds for all)."""
    def send(files: list[tuple]) -> int:
        return httpx.post(url, files=files, timeout=timeout_s).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(len(requests)) as pool:
        codes = list(pool.map(send, requests))
    return codes, time.perf_counter() - start


def server_peak(path: str, requests: list[list[tuple]], model: Path = DEMO_MODEL) -> tuple[float, float, list[int], float]:
    """A fresh server under one load -> (idle RSS MB, peak RSS MB, status codes, seconds)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as evidence:
        server = start_server(port, Path(evidence), model)
        try:
            idle = peak_rss_mb(server.pid)
            codes, seconds = post_all(f"http://127.0.0.1:{port}{path}", requests)
            return idle, peak_rss_mb(server.pid), codes, seconds
        finally:
            server.terminate()
            server.wait(timeout=30)


def report_server(model: Path = DEMO_MODEL) -> list[bool]:
    png = huge_bilevel_png()
    print(f"server ({model}), a {len(png):,}-byte 1-bit {HUGE_SIDE}x{HUGE_SIDE} PNG; goal: peak <= "
          f"{SERVER_GOAL_MB} MB, answers 200 or 503")
    loads = {
        "1 screening of 4 such PNGs": ("/v1/screenings", [[("images", (f"{i}.png", png, "image/png"))
                                                            for i in range(4)]], (200, 503)),
        "8 parallel inspections of it": ("/v1/inspections", [[("image", ("p.png", png, "image/png"))]] * 8,
                                         (200, 503)),
        # The multipart attack: more parts than the route takes are refused as they arrive, not held.
        f"3 x {ATTACK_PARTS} parts of 1 MB, screenings": ("/v1/screenings", [attack_parts("images")] * 3, (400, 413)),
        f"{ATTACK_FIELDS} text fields of 1 MB, inspection": ("/v1/inspections", [attack_fields()], (400, 413, 422)),
    }
    met = []
    for name, (path, requests, expected) in loads.items():
        idle, peak, codes, seconds = server_peak(path, requests, model)
        ok = peak <= SERVER_GOAL_MB and all(code in expected for code in codes)
        met.append(ok)
        print(f"  {name:<36} idle {idle:6.0f} MB  peak {peak:6.0f} MB  {seconds:5.1f} s  "
              f"answers {sorted(codes)}  {'meets' if ok else 'MISSES'} the goal")
    return met


def write_photos(folder: Path, count: int) -> None:
    design = make_product_design(0, 0)  # a product of the demo model (trained on synth seed 0)
    photos = [jpeg_bytes(photograph(render_artwork(design, 0.3), np.random.default_rng(seed)), 90)
              for seed in range(DISTINCT_PHOTOS)]
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"photo-{index:05d}.jpg").write_bytes(photos[index % len(photos)])


def screen_peak(folder: Path, out: Path) -> tuple[float, float, int]:
    """`counterfeit screen FOLDER --output OUT` in a fresh wrapper process -> (peak RSS MB, seconds, exit code).

    The wrapper is new for each run, so RUSAGE_CHILDREN's maximum is this run's screen process alone."""
    wrapper = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL)"
               ".returncode; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")
    command = [sys.executable, "-c", wrapper, sys.executable, "-m", "counterfeit", "screen", str(folder),
               "--model", str(DEMO_MODEL), "--output", str(out)]
    start = time.perf_counter()
    peak_kb, code = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return int(peak_kb) / 1024, time.perf_counter() - start, int(code)


def report_screen(count: int) -> bool:
    print(f"counterfeit screen, 640x480 JPEGs; goal: peak <= {SCREEN_GOAL_MB} MB and 4N within "
          f"{SCREEN_SPREAD:.0%} of N")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (count, 4 * count):
            folder = Path(tmp) / f"n{n}"
            write_photos(folder, n)
            peaks[n], seconds, code = screen_peak(folder, Path(tmp) / f"n{n}.jsonl")
            print(f"  {n:>5} photos: peak {peaks[n]:6.0f} MB  {seconds:5.1f} s ({n / seconds:5.1f} img/s)  exit {code}")
    small, large = peaks[count], peaks[4 * count]
    ok = large <= SCREEN_GOAL_MB and large <= small * (1 + SCREEN_SPREAD)
    print(f"  4N / N peak: {large / small:.2f}x; {'meets' if ok else 'MISSES'} the goal")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40, help="N: screen N and 4N photos (default 40)")
    parser.add_argument("--skip-server", action="store_true", help="only measure `counterfeit screen`")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="model the server serves (default: demo)")
    args = parser.parse_args()
    met = [] if args.skip_server else report_server(args.model)
    met.append(report_screen(args.photos))
    print("memory goals: " + ("all met" if all(met) else "NOT all met"))


if __name__ == "__main__":
    main()
