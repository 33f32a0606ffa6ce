"""Benchmark: the HTTP server under concurrent load vs the bare predictor, side by side in one run.

Starts `counterfeit serve` (the demo model unless --model, on loopback) in a subprocess, then for 1, 8
and 32 concurrent clients posts the same 640x480 synth photo (of a product the demo model knows) for a
fixed number of requests each, and reports throughput and p50/p99 latency. The bare predictor (decode +
quality + prepare + predict, one thread, no HTTP) is measured on the same photo. Goal: server throughput
>= 0.8x the bare predictor's. Only loopback is ever contacted; every loop is bounded in count.

    .venv/bin/python bench/server.py [--requests N] [--model MODEL.onnx --photo PHOTO.jpg]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from api.settings import DEMO_MODEL
from datatools.synth import write_dataset
from inference.predictor import Predictor, stacked
from inference.quality import check

sys.path.insert(0, str(Path(__file__).parent))
from photos import phone_jpeg  # noqa: E402  (bench scripts are run as files, not as a package)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, data_dir: Path, model: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`counterfeit serve` on `model`, once /readyz answers; `env` adds to the environment it runs in."""
    env = {**os.environ, "COUNTERFEIT_DATA_DIR": str(data_dir), **(env or {})}  # a bench's evidence is thrown away
    process = subprocess.Popen([sys.executable, "-m", "counterfeit", "serve", "--port", str(port),
                                "--model", str(model)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(600):  # at most 60 s to come up
        if process.poll() is not None:  # no use waiting: a bad model, a taken port (its own output says which)
            raise RuntimeError(f"the server exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not become ready within 60 s")


def bare_rate(photo: bytes, count: int, model: Path) -> float:
    predictor = Predictor(model)
    start = time.perf_counter()
    for _ in range(count):
        loaded = predictor.load(photo)
        check(loaded.image, (loaded.width, loaded.height))
        prepared = predictor.prepare(loaded.image)
        predictor.scores(*stacked([prepared]))
    return count / (time.perf_counter() - start)


def bare_service_rate(photo: bytes, count: int, data_dir: Path, model: Path) -> float:
    """The same work as one inspection request, without HTTP: scoring plus the durable evidence record."""
    from api.batching import Batcher
    from api.service import inspect_photo, record_inspection
    from api.settings import Settings
    from evidence_store import open_store

    settings, predictor = Settings(data_dir=data_dir), Predictor(model)
    batcher, store = Batcher(), open_store(None, data_dir)
    start = time.perf_counter()
    for _ in range(count):
        inspection, kept = inspect_photo(photo, predictor, batcher, settings)
        record_inspection(store, photo, inspection, kept, "bench", None, None, None)
    rate = count / (time.perf_counter() - start)
    batcher.close()
    store.close()
    return rate


def load_test(url: str, photo: bytes, clients: int, per_client: int, *,
              per_request: int = 1) -> tuple[float, list[float]]:
    """-> (photos/s, request latencies in s) for `clients` threads each sending `per_client` requests.
    per_request > 1 posts that many copies of the photo to /v1/screenings in each request."""
    files = ({"image": ("p.jpg", photo, "image/jpeg")} if per_request == 1 else
             [("images", (f"p{i}.jpg", photo, "image/jpeg")) for i in range(per_request)])

    def client(_: int) -> list[float]:
        latencies = []
        with httpx.Client(timeout=60) as session:
            for _ in range(per_client):
                start = time.perf_counter()
                answer = session.post(url, files=files)
                answer.raise_for_status()
                latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for per in pool.map(client, range(clients)) for t in per]
    return len(latencies) * per_request / (time.perf_counter() - start), latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def print_listing_batches(url: str, photo: bytes, photos: int, bare: float, per_request: int = 16) -> None:
    """Listing systems send batches: POST /v1/screenings with 16 photos a request (each recorded as evidence)."""
    for clients in (1, 4):
        rate, latencies = load_test(url, photo, clients, max(1, photos // per_request // clients),
                                    per_request=per_request)
        print(f"  screenings of {per_request} photos, {clients} client(s): {rate:7.1f} img/s, "
              f"request p50 {percentile(latencies, 50) * 1000:.0f} ms; vs bare {rate / bare:.2f}x")


def print_photo_size_ratio(url: str, photo: bytes, big_photo: bytes, count: int = 30) -> None:
    """End to end, one client: a 12 MP phone JPEG against the 640x480 photo it was made from."""
    medians = {}
    for name, data in (("640x480", photo), ("12 MP", big_photo)):
        _, latencies = load_test(url, data, clients=1, per_client=count)
        medians[name] = statistics.median(latencies)
    print(f"  end to end, 1 client: 640x480 ({len(photo):,} B) p50 {medians['640x480'] * 1000:.1f} ms; "
          f"12 MP ({len(big_photo):,} B) p50 {medians['12 MP'] * 1000:.1f} ms; "
          f"ratio {medians['12 MP'] / medians['640x480']:.2f}x (goal <= 2x)")


def synth_photo() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp) / "d", seed=0, products=1, n_train=2, n_val=2, n_test=2, progress=False)
        return next((Path(tmp) / "d" / "test").rglob("*.jpg")).read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="model file (default: the demo model)")
    parser.add_argument("--photo", type=Path, help="a 640x480 JPEG the model knows (default: a synth photo)")
    args = parser.parse_args()
    photo = args.photo.read_bytes() if args.photo else synth_photo()
    big_photo = phone_jpeg(Image.open(io.BytesIO(photo)))
    bare = bare_rate(photo, args.requests, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        service = bare_service_rate(photo, args.requests, Path(tmp), args.model)
    port, evidence = free_port(), tempfile.TemporaryDirectory()
    server = start_server(port, Path(evidence.name), args.model)
    try:
        print(f"server vs bare predictor: {args.model.name} ({Predictor(args.model).metadata.name}), one 640x480 "
              f"JPEG, {args.requests} requests per level")
        print(f"  bare predictor (1 thread, no HTTP): {bare:7.1f} img/s")
        print(f"  bare service, + quality gate and durable evidence record (no HTTP): {service:7.1f} img/s")
        print(f"  {'clients':>7}  {'img/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'vs bare':>7}  {'vs service':>10}")
        for clients in (1, 8, 32):
            rate, latencies = load_test(f"http://127.0.0.1:{port}/v1/inspections", photo, clients,
                                        max(1, args.requests // clients))
            print(f"  {clients:>7}  {rate:7.1f}  {percentile(latencies, 50) * 1000:7.1f}  "
                  f"{percentile(latencies, 99) * 1000:7.1f}  {rate / bare:6.2f}x  {rate / service:9.2f}x")
        print_listing_batches(f"http://127.0.0.1:{port}/v1/screenings", photo, args.requests, bare)
        print_photo_size_ratio(f"http://127.0.0.1:{port}/v1/inspections", photo, big_photo)
    finally:
        server.terminate()
        server.wait(timeout=30)
        evidence.cleanup()


if __name__ == "__main__":
    main()
