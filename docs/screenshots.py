"""Make the README's screenshots from the running product, so they cannot go stale: `make screenshots`.

Serves the demo model (`counterfeit serve`, a throwaway evidence folder), opens the inspector's page in
headless Chromium at 390x844 CSS px (a current phone), sends each of the demo model's sample photos as the
camera button would, and saves what the phone's screen shows once the verdict is in:

    docs/inspector-phone-genuine.png       inference/demo/samples/genuine-1.jpg
    docs/inspector-phone-counterfeit.png   inference/demo/samples/counterfeit-1.jpg

Needs the dev install (playwright, no browser download) and Debian's chromium (`make browser`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "inference" / "demo" / "samples"
SHOTS = {"inspector-phone-genuine.png": SAMPLES / "genuine-1.jpg",
         "inspector-phone-counterfeit.png": SAMPLES / "counterfeit-1.jpg"}
PHONE = {"width": 390, "height": 844}  # CSS px
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
READY_S = 90  # the first start loads onnxruntime and validates the model in a child process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def demo_server():
    """The URL of `counterfeit serve` on the demo model, stopped (and its evidence folder removed) after."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as data_dir:
        env = {**os.environ, "COUNTERFEIT_DATA_DIR": data_dir, "COUNTERFEIT_API_KEYS": "[]",
               "COUNTERFEIT_DRAIN_SECONDS": "0"}
        server = subprocess.Popen([sys.executable, "-m", "counterfeit", "serve", "--port", str(port)], cwd=REPO,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            yield wait_ready(f"http://127.0.0.1:{port}", server)
        finally:
            server.terminate()
            server.wait(timeout=30)


def wait_ready(url: str, server: subprocess.Popen) -> str:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"screenshots: the server exited: {server.stderr.read()[-2000:]}")
        try:
            with urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return url
        except (URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"screenshots: the server was not ready in {READY_S} s")


def shoot(browser, url: str, photo: Path, out: Path) -> None:
    """One fresh phone profile: the page, the photo sent, the screen as the inspector sees it."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "/")
    page.wait_for_selector("#connection[data-state='ok']")
    page.set_input_files("#photo-input", str(photo))
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function("() => !document.getElementById('overlay-controls').hidden")
    page.wait_for_timeout(300)  # the heatmap's image decodes after the verdict is drawn
    page.screenshot(path=str(out))
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs (default: docs/)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("COUNTERFEIT_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        raise SystemExit("screenshots: Chromium not found: `make browser`, or set COUNTERFEIT_CHROMIUM")
    args.out.mkdir(parents=True, exist_ok=True)
    with demo_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for name, photo in SHOTS.items():
            shoot(browser, url, photo, args.out / name)
            print(f"wrote {args.out / name} ({photo.name})")
        browser.close()


if __name__ == "__main__":
    main()
